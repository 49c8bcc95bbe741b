"""Image features into the HDF5 layout vqa/data/features.py reads: `vqa extract` (image folder ->
grid, extract.py), `vqa convert` (precomputed bottom-up attention TSV -> boxes, convert.py), both
written by writer.py."""
