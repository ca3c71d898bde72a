"""What the screens call, without Gradio: model registry, decoding and its step traces, reconstruction,
codebook/information analyses, the training form. Everything here is testable without a browser."""
