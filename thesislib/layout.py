"""The LAG folder layout, shared by the reader (data) and the synthetic generator (synth).

    ROOT/{non_glaucoma,suspicious_glaucoma}/{image,attention_map}/NNNN.jpg

An image and its expert attention map share a file name; the class folder gives the label.
"""

CLASSES = ("non_glaucoma", "suspicious_glaucoma")  # label 0, label 1 (glaucoma is positive)
IMAGE_DIR = "image"
MAP_DIR = "attention_map"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
