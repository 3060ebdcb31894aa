"""Window-level Q-Former: learned queries that summarise fixed windows of encoder frames (as in SALMONN).

The frame sequence of each utterance is cut into windows of ``window`` frames that start every ``stride`` frames
(0, stride, 2 * stride, ...). For every window, ``num_queries`` learned query tokens run through a small BERT-style
transformer: the queries attend to each other (self-attention), then to the frames of their window only
(cross-attention), then a feed-forward block; each block is post-norm (residual, then LayerNorm). A window yields
``num_queries`` output vectors, so an utterance of ``W_b`` windows yields ``W_b * num_queries`` tokens for the LLM.

Unlike SALMONN, which pads every input to 30 s and always produces 88 windows, only windows that hold at least one
valid frame are computed; padded frames inside a partial last window are masked out of the cross-attention, so an
utterance gives the same outputs alone or batched next to a longer one. All kept windows of a batch run as one
batch of shape (N_windows, window, D_in).

The parameters correspond one-to-one to SALMONN's ``speech_Qformer`` / ``speech_query_tokens`` (the query path of
the BLIP-2 Q-Former; the text-only parts that SALMONN deletes do not exist here); see
:mod:`abhinaya.weights.salmonn_checkpoint` for the name map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QFormerAttention", "QFormerFeedForward", "QFormerLayer", "WindowQFormer", "WindowQFormerConfig"]


@dataclass
class WindowQFormerConfig:
    """Settings of :class:`WindowQFormer`; the only place their defaults live (paper scale = SALMONN's).

    Attributes:
        encoder_width: width D_in of the input frames; the speech LLM sets it to the sum of its branch widths
            (SALMONN: Whisper-large-v2 1280 + BEATs 768 = 2048).
        hidden_size: width H of the queries (BERT-base: 768).
        num_layers: transformer layers (SALMONN: 2).
        num_heads: attention heads; must divide ``hidden_size``.
        intermediate_size: hidden width of the feed-forward blocks.
        cross_attention_every: layer i has cross-attention when ``i % cross_attention_every == 0`` (SALMONN: every
            layer).
        layer_norm_eps: epsilon of every LayerNorm (BERT: 1e-12).
        dropout: dropout on the query embeddings and on each block's output before the residual sum.
        attention_dropout: dropout on the attention weights.
        window: frames per window (SALMONN: round(1500 * 0.333333 / 30) = 17 Whisper frames, 0.34 s).
        stride: frames between window starts (SALMONN: 17, no overlap).
        num_queries: learned queries per window (SALMONN: 1).
        initializer_range: standard deviation of the normal initialisation of weights and query tokens.
    """

    encoder_width: int = 2048
    hidden_size: int = 768
    num_layers: int = 2
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_every: int = 1
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    window: int = 17
    stride: int = 17
    num_queries: int = 1
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in (
            "encoder_width",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "cross_attention_every",
            "window",
            "stride",
            "num_queries",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_size ({self.hidden_size})")
        for name in ("dropout", "attention_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")


class QFormerAttention(nn.Module):
    """Multi-head attention block, post-norm: ``norm(x + dropout(output(attention(x, context))))``.

    Self-attention when no context is given; cross-attention (keys and values from ``context``) otherwise.

    Args:
        hidden_size: width H of ``x``.
        num_heads: attention heads.
        context_width: width of the keys/values source (H for self-attention, D_in for cross-attention).
        dropout: dropout on the block output.
        attention_dropout: dropout on the attention weights.
        eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        context_width: int,
        dropout: float,
        attention_dropout: float,
        eps: float,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.attention_dropout = attention_dropout
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(context_width, hidden_size)
        self.value = nn.Linear(context_width, hidden_size)
        self.output = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        context_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x (N, Q, H); context (N, K, D_ctx) or None (self-attention); context_mask (N, K) bool, True = attend.
        Every row of ``context_mask`` must hold at least one True. Returns (N, Q, H)."""
        source = x if context is None else context
        q = self._heads(self.query(x))
        k = self._heads(self.key(source))
        v = self._heads(self.value(source))
        mask = None if context_mask is None else context_mask[:, None, None, :]
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.attention_dropout if self.training else 0.0
        )
        attended = attended.transpose(1, 2).reshape(x.shape)
        return self.norm(x + self.dropout(self.output(attended)))


class QFormerFeedForward(nn.Module):
    """Feed-forward block, post-norm: ``norm(x + dropout(down(gelu(up(x)))))``; x (N, Q, H) -> (N, Q, H)."""

    def __init__(self, hidden_size: int, intermediate_size: int, dropout: float, eps: float):
        super().__init__()
        self.up = nn.Linear(hidden_size, intermediate_size)
        self.down = nn.Linear(intermediate_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # exact (erf) GELU, as BERT's "gelu"
        return self.norm(x + self.dropout(self.down(F.gelu(self.up(x)))))


class QFormerLayer(nn.Module):
    """Self-attention among the queries, optional cross-attention to the frames, feed-forward."""

    def __init__(self, config: WindowQFormerConfig, cross_attention: bool):
        super().__init__()
        c = config
        self.self_attention = QFormerAttention(
            c.hidden_size, c.num_heads, c.hidden_size, c.dropout, c.attention_dropout, c.layer_norm_eps
        )
        self.cross_attention = (
            QFormerAttention(
                c.hidden_size, c.num_heads, c.encoder_width, c.dropout, c.attention_dropout, c.layer_norm_eps
            )
            if cross_attention
            else None
        )
        self.feed_forward = QFormerFeedForward(c.hidden_size, c.intermediate_size, c.dropout, c.layer_norm_eps)

    def forward(self, queries: torch.Tensor, frames: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """queries (N, Q, H), frames (N, K, D_in), frame_mask (N, K) bool -> (N, Q, H)."""
        x = self.self_attention(queries)
        if self.cross_attention is not None:
            x = self.cross_attention(x, frames, frame_mask)
        return self.feed_forward(x)


class WindowQFormer(nn.Module):
    """Window-level Q-Former; the constructor builds random weights (no loading).

    Input features (B, T, D_in) and mask (B, T) bool (True = valid frame); output queries (B, W * Q, H) and
    out_mask (B, W * Q) bool, where Q = ``num_queries`` and W is the largest number of windows any utterance has.
    Window k covers frames [k * stride, k * stride + window); it counts for utterance b when it holds at least one
    valid frame of b. Output positions k * Q ... k * Q + Q - 1 belong to window k; positions of windows that do not
    count are zero and False in out_mask. For the usual prefix masks (valid frames first), utterance b of L_b frames
    has W_b = ceil(L_b / stride) windows.
    """

    def __init__(self, config: WindowQFormerConfig):
        super().__init__()
        self.config = config
        c = config
        self.query_tokens = nn.Parameter(torch.zeros(1, c.num_queries, c.hidden_size))
        self.input_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.input_dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(
            QFormerLayer(c, cross_attention=(i % c.cross_attention_every == 0)) for i in range(c.num_layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT initialisation: weights and query tokens N(0, initializer_range), biases 0, LayerNorms identity."""
        std = self.config.initializer_range
        nn.init.normal_(self.query_tokens, mean=0.0, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, mean=0.0, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_windows(self, windows: torch.Tensor, window_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Run the Q-Former on windows that are already cut.

        Args:
            windows: (N, K, D_in) frames of N windows of K frames.
            window_mask: (N, K) bool, True = valid frame; every row needs one. None = all valid.

        Returns:
            (N, Q, H) query outputs.
        """
        if windows.dim() != 3 or windows.shape[-1] != self.config.encoder_width:
            raise ValueError(
                f"windows must be (N, K, {self.config.encoder_width}), got shape {tuple(windows.shape)}"
            )
        windows = windows.to(self.query_tokens.dtype)
        if window_mask is None:
            window_mask = torch.ones(windows.shape[:2], dtype=torch.bool, device=windows.device)
        x = self.input_dropout(self.input_norm(self.query_tokens.expand(windows.shape[0], -1, -1)))
        for layer in self.layers:
            x = layer(x, windows, window_mask)
        return x

    def forward(
        self, features: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, D_in), mask (B, T) bool or None (all valid) -> (queries (B, W*Q, H), out_mask (B, W*Q))."""
        c = self.config
        if features.dim() != 3 or features.shape[-1] != c.encoder_width:
            raise ValueError(f"features must be (B, T, {c.encoder_width}), got shape {tuple(features.shape)}")
        batch, frames, _ = features.shape
        if mask is None:
            mask = torch.ones(batch, frames, dtype=torch.bool, device=features.device)
        elif mask.shape != (batch, frames):
            raise ValueError(f"mask must be (B, T) = {(batch, frames)}, got {tuple(mask.shape)}")
        mask = mask.to(device=features.device, dtype=torch.bool)

        starts = math.ceil(frames / c.stride)
        if starts == 0:
            empty = features.new_zeros(batch, 0, c.hidden_size, dtype=self.query_tokens.dtype)
            return empty, mask[:, :0]
        span = (starts - 1) * c.stride + c.window
        pad = max(span - frames, 0)
        # Padded frames are zeroed so that even NaN or inf there cannot leak through the attention product.
        x = F.pad(features.masked_fill(~mask.unsqueeze(-1), 0.0), (0, 0, 0, pad))
        m = F.pad(mask, (0, pad), value=False)
        x_windows = x.unfold(1, c.window, c.stride)[:, :starts]  # (B, n, D_in, window)
        m_windows = m.unfold(1, c.window, c.stride)[:, :starts]  # (B, n, window)
        counts = m_windows.any(dim=-1)  # (B, n)
        used = counts.any(dim=0).nonzero()
        num_windows = int(used.max()) + 1 if used.numel() else 0
        counts = counts[:, :num_windows]

        out = x.new_zeros(batch, num_windows, c.num_queries, c.hidden_size, dtype=self.query_tokens.dtype)
        if counts.any():
            windows = x_windows[:, :num_windows][counts].transpose(1, 2)  # (N, window, D_in)
            window_mask = m_windows[:, :num_windows][counts]  # (N, window)
            out[counts] = self.forward_windows(windows, window_mask)
        out_mask = counts.repeat_interleave(c.num_queries, dim=1)
        return out.reshape(batch, num_windows * c.num_queries, c.hidden_size), out_mask
