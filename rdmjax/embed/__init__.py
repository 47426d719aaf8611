"""Image encoders: the Flax CLIP ViT-B/32 tower (`clip_vision`, with
`clip_weights` converting the Hugging Face checkpoint) and any transformers
image model in PyTorch (`hf_vision`)."""
