"""What ``polymodal list`` prints, copied from the registries so that it loads without
torch.  Written by ``python -m polymodal.cli.list_cmd``; do not edit.
"""

CATALOGUE: dict[str, tuple[tuple[str, str, str], ...]] = {
    "encoders": (
        ("audio_cnn", "audio", "log-mel + 2-D CNN over (mel, time), a sequence over frames"),
        (
            "audio_ge2e",
            "audio",
            "pretrained GE2E speaker-encoder LSTM (Resemblyzer), frozen frame states + adapter",
        ),
        ("audio_gru", "audio", "log-mel + bidirectional GRU over packed frames"),
        (
            "audio_logmel",
            "audio",
            "fixed log-mel vector of a short clip: trimmed, resampled frames + band stats (no weights)",
        ),
        ("audio_transformer", "audio", "log-mel + transformer encoder over frames"),
        ("efficientnet_lite0", "image", "pretrained EfficientNet-Lite0 (ImageNet), 1280-d"),
        ("image_cnn", "image", "small VGG-style CNN (28x28 MNIST up to 224x224)"),
        ("image_vit", "image", "small Vision Transformer (patches, CLS, learned positions)"),
        ("minilm", "text", "pretrained all-MiniLM-L6-v2 sentence encoder (384-d, frozen)"),
        ("mlp", "tabular,features", "MLP for tabular rows and feature vectors/sequences"),
        ("text_transformer", "text", "WordPiece tokens + small transformer trained from scratch"),
        ("ts_cnn", "timeseries", "dilated residual 1-D CNN over a multichannel time series"),
        ("ts_gru", "timeseries", "bidirectional GRU over a multichannel time series"),
        ("ts_transformer", "timeseries", "transformer encoder over a multichannel time series"),
        ("video_gru", "video", "per-frame image encoder + bidirectional GRU over frames"),
        ("video_transformer", "video", "per-frame image encoder + transformer over frames"),
    ),
    "fusions": (
        (
            "attention",
            "feature",
            "Softmax attention over projected modality embeddings (present ones only).",
        ),
        (
            "bottleneck",
            "feature",
            "MBT: per-modality transformers exchanging through shared bottleneck tokens.",
        ),
        (
            "coattention",
            "feature",
            "ViLBERT co-attention: each stream attends to the others, then to itself.",
        ),
        ("early", "feature", "Concatenate pooled vectors + presence flags, then an MLP."),
        (
            "gmu",
            "feature",
            "Gated Multimodal Unit: per-feature softmax gates over present modalities.",
        ),
        (
            "graph",
            "feature",
            "Modalities (or time steps) as graph nodes; GAT with a learned adjacency bias.",
        ),
        (
            "hybrid",
            "decision",
            "Decision level: joint early head plus per-modality heads, learned mixture.",
        ),
        (
            "late",
            "decision",
            "Decision level: a head per modality; mean, learned-weight or stacked logits.",
        ),
        ("lowrank", "feature", "LMF: rank-r modality-specific factors of the TFN weight tensor."),
        (
            "mult",
            "feature",
            "MulT: directional cross-modal attention between unaligned sequences, pooled.",
        ),
        (
            "tensor",
            "feature",
            "TFN: outer product of [projected h_m; 1] over modalities, then an MLP.",
        ),
    ),
    "tasks": (
        ("context", "-", "classify each utterance in its video's context (MOSI)"),
        ("contrastive", "-", "learn a joint embedding space from paired data"),
        ("supervised", "-", "learn the labels of the examples (the default)"),
    ),
}
