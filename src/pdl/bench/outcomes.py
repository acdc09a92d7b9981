"""What the commands that are not a plain run keep beside their points: `pdl tune`'s choice, `pdl decode`'s
pipelines, `pdl profile`'s transforms and decoders. Pure data; ``records.ResultSet`` holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .point import Point


@dataclass(frozen=True)
class Tuned:
    """What `pdl tune` chose (a results file of kind "tune"): the call to use, its stall, and why it stopped."""

    call: str
    """The loader call to paste: 'ParallelLoader(ds, pipe, batch_size=64, num_workers=3, prefetch=2)'."""
    workers: int
    """The chosen worker count."""
    prefetch: int
    """The chosen prefetch (batches in flight per worker)."""
    stall: float
    """The chosen configuration's median stall share (0–1)."""
    target: float
    """The stall share asked for (--target-stall)."""
    reached: bool
    """Whether the chosen configuration's stall is within the target."""
    reason: str
    """Why the search stopped, in words."""
    memory_peak_mb: float | None
    """The chosen configuration's peak memory (main + workers, one untimed epoch in a fresh process)."""
    search_s: float
    """Seconds the search took."""
    trials: int
    """Configurations measured (each is a point of the file)."""
    ceiling_check: Point | None = None
    """The chosen configuration measured again without the step, beside the sequential loop and the measured
    ceiling in the same rounds: its ``speedup``, ``ceiling`` and ``of_ceiling`` say whether the loader or the machine
    is the limit. None with --no-ceiling (or from a file written before it was measured)."""


@dataclass(frozen=True)
class Decoded:
    """One pipeline of `pdl decode`: how its first epoch's images decoded with --reduce-decode, and the mean
    absolute difference between the outputs from full and from reduced decoding."""

    pipeline: str
    """The pipeline measured."""
    loader: str
    """The loader timed both ways."""
    need: tuple[int, int] | None
    """(height, width) the pipeline's first transform reduces every image to; None: no reduced decode possible."""
    scales: dict[str, int]
    """Images decoded at each reduction factor ("2", "4", "8")."""
    reduced: int
    """Images of the first epoch decoded at a reduced scale."""
    full: int
    """Images decoded at full size: not a JPEG (PNG, WebP, ...), or a JPEG too small to halve."""
    jpegs: int
    """JPEGs among the images."""
    why_none: str | None
    """Why no image was decoded reduced, in words; None when some were."""
    mad: float
    """In the output's own units (0–255 for uint8)."""
    mad_images: int
    """Images the mean absolute difference is taken over: those decoded reduced."""
    output_dtype: str
    """The pipeline's output dtype (uint8, or float32 for a normalising pipeline)."""


@dataclass(frozen=True)
class TransformCost:
    """One transform of a profiled pipeline (a branch of ``OneOf``/``SomeOf`` is one too, one level deeper)."""

    name: str
    """Its class: "CLAHE", "OneOf"."""
    where: str
    """Its place in the pipeline: "transforms[7]", "transforms[2].transforms[0]"."""
    depth: int
    """0 for the pipeline's own transforms, 1 inside a OneOf/SomeOf, and so on."""
    p: float
    """Its own probability, as configured (a branch's is relative to its siblings')."""
    ran: int
    """Images it ran on (its random draw chose it), of ``Profiled.images``: the same in every repeat."""
    ms: tuple[float, ...]
    """Milliseconds per image (all images, those it skipped included), one value per repeat."""
    group: bool = False
    """A OneOf/SomeOf/Sequential: its time includes its branches' (not added again in the sum)."""


@dataclass(frozen=True)
class DecoderSpeed:
    """One decoder of `pdl profile --decoders`, on the profile's JPEGs, in the same interleaved rounds as the others."""

    decoder: str
    """The decoder: opencv, pillow or simplejpeg."""
    jpegs: int
    """JPEGs decoded per round (other formats are OpenCV's whatever the decoder)."""
    images_per_s: float | None
    """At full scale, the median round; None when the decoder is not installed."""
    reduced_per_s: float | None = None
    """At the scale --reduce-decode would use (the pipeline's first resize); None when none applies or not installed."""
    reduced: int = 0
    """JPEGs that --reduce-decode would decode at 1/2, 1/4 or 1/8 scale."""
    mad: float | None = None
    """Mean absolute difference from OpenCV's full-scale output, 0–255; None when not installed."""
    mad_reduced: float | None = None
    """The same at the reduced scale, against OpenCV's reduced output."""
    missing: str | None = None
    """The pip command that installs it, when it is not installed."""
    rates: tuple[float, ...] = ()
    """Full-scale JPEGs/s of each round, in round order (every decoder's round r ran in the same round)."""


@dataclass(frozen=True)
class Profiled:
    """`pdl profile`: what each transform of one pipeline costs per image, with read and decode beside them."""

    pipeline: str
    """The pipeline profiled (a shipped level or a YAML path)."""
    images: int
    """Images profiled (skipped ones left out)."""
    repeats: int
    """Measured repeats: each list of milliseconds holds one value per repeat."""
    read_ms: tuple[float, ...]
    """Milliseconds per image reading the file, one per repeat (a dataset of one's own: its whole ``__getitem__``)."""
    decode_ms: tuple[float, ...]
    """Milliseconds per image decoding, one per repeat (0 for a dataset of one's own: timed whole as read)."""
    augment_ms: tuple[float, ...]
    """The pipeline timed whole, as loaders run it (not instrumented), ms per image, one per repeat."""
    transforms: tuple[TransformCost, ...]
    """In pipeline order, each group followed by its branches."""
    same_output: bool
    """The instrumented pipeline's outputs equal the plain pipeline's, image for image (same seeds)."""
    decoder: str = "opencv"
    """The JPEG decoder the images were read with: opencv, pillow or simplejpeg."""
    timed_whole: bool = False
    """The dataset is one's own: its ``__getitem__`` is timed whole, as the read stage."""
    decoders: tuple[DecoderSpeed, ...] = ()
    """With --decoders: one per decoder asked for, in the order given."""
