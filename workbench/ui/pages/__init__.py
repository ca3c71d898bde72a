"""One module per screen: Reconstruct, Codebook, Information, Train, Generate."""
