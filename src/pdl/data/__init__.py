"""Everything about the images before a loader touches them: files, lists, decoding, the pipeline, test sets."""
