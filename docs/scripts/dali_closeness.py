"""How close the dali loader's images are to pdl's: the same files decoded, resized and cropped at the same window.

    python docs/scripts/dali_closeness.py FOLDER [--count N]

For each image: pdl's path (its reader, then the `light` pipeline's Resize 256×256 through albumentations, then a
200×200 window) against DALI's CPU operators (fn.decoders.image, fn.resize linear without antialiasing, fn.crop at
the same window). Prints the mean absolute difference per channel value (0–255) after decoding, after resizing and
in the window, and the share of values that differ by more than 8. Needs the dali extra.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline as DaliPipeline

    from pdl.data.folder import ImageFolder
    from pdl.data.pipeline import load_pipeline

    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--count", type=int, default=64)
    args = parser.parse_args()
    ds = ImageFolder(args.folder, limit=args.count)
    resize = load_pipeline("light").compose.transforms[0]  # Resize 256×256, linear
    window = (28, 28, 200, 200)  # top, left, height, width: one window, the same for both
    files = [np.fromfile(ds.path(i), dtype=np.uint8) for i in range(len(ds))]

    pipe = DaliPipeline(batch_size=len(files), num_threads=2, device_id=None, seed=0)
    with pipe:
        encoded = fn.external_source(source=lambda: files, batch=True)
        decoded = fn.decoders.image(encoded, device="cpu", output_type=types.RGB)
        resized = fn.resize(decoded, resize_x=256, resize_y=256, interp_type=types.INTERP_LINEAR, antialias=False)
        top, left, h, w = window
        cropped = fn.crop(resized, crop=(h, w), crop_pos_x=left / (256 - w), crop_pos_y=top / (256 - h))
        pipe.set_outputs(decoded, resized, cropped)
    pipe.build()
    d_dec, d_res, d_crop = pipe.run()

    diffs: dict[str, list[np.ndarray]] = {"decoded": [], "resized 256×256": [], "200×200 window": []}
    for i in range(len(ds)):
        ours, _, _ = ds.read(i)
        ours_resized = resize(image=ours)["image"]
        top, left, h, w = window
        pairs = (
            (ours, d_dec.at(i)),
            (ours_resized, d_res.at(i)),
            (ours_resized[top : top + h, left : left + w], d_crop.at(i)),
        )
        for key, (a, b) in zip(diffs, pairs, strict=True):
            assert a.shape == b.shape, (key, a.shape, b.shape)
            diffs[key].append(np.abs(a.astype(np.int16) - np.asarray(b).astype(np.int16)).ravel())
    print(f"{len(ds)} images from {args.folder}")
    for key, parts in diffs.items():
        d = np.concatenate(parts)
        print(f"{key:>16}: mean |Δ| {d.mean():.2f}, max {d.max()}, values off by > 8: {np.mean(d > 8):.2%}")


if __name__ == "__main__":
    main()
