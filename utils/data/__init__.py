"""Data sets: the table of per-dataset facts, loading into query / database / train parts,
batches on the device, labels and their similarity, splits and protocols."""
