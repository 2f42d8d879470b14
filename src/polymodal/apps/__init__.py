"""Applications assembled from the library: the MOSI demo and, later, the video pipeline."""
