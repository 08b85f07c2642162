"""How much a picture looks like the model's training pictures, from its image encoder's features.

A model answers from its answer list whatever it is shown: a photo of a cat gets "rectangle" at
97%. Its softmax confidence cannot tell (it is calibrated only on training-like pictures), but
the image encoder's features can, and they come out of the same forward pass.

1. **Describe** each picture by pooled statistics of the encoder's last feature map: per channel
   the mean, maximum and standard deviation over space, and the mean weighted by how far each
   location is from the picture's own median (its background), which describes the object
   whatever its size; and the mean and maximum of each earlier stage's channels (colour detail).
   (Per-location scores were tried too and separate nothing: every patch of a photo looks like
   some patch of a training picture. All four statistics of both stages flag a few more
   pictures, at twice the cost: ``benchmarks/README.md``.)
2. **Fit** on training pictures: k-means clusters of the descriptors and one covariance shared by
   all clusters; the score of a picture is its squared Mahalanobis distance to the nearest cluster
   centre (Lee et al., 2018, with clusters instead of classes, so no labels are needed).
3. **Calibrate** on held-out training pictures (never the test split): the familiarity of a
   picture is the share of held-out pictures that score at least as badly, with an exponential
   tail fitted to the worst tenth beyond them. A typical training-like picture gets about 0.5;
   most photos get under 0.0001 (the bundled model: 1e-27 to 0.008, a few above the 0.001
   threshold, whose answers the confidence check then mostly marks as guesses).

How these choices measured against an energy score, the softmax confidence, single-stage and
per-location statistics: ``benchmarks/README.md`` and the bundled model's card.
"""

from __future__ import annotations

import bisect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from vqa_engine.errors import ModelPackageError

FORMAT_VERSION = 1
METHOD = "mahalanobis-kmeans"
#: the statistics ``describe_images`` takes per channel of the last feature map ...
STATISTICS = ("mean", "max", "std", "foreground_mean")
#: ... and per channel of each earlier one
EARLY_STATISTICS = ("mean", "max")
#: how ``describe_images`` lays them out; statistics fitted to another layout are refused
DESCRIPTOR = "v2: last map mean|max|std|foreground_mean x channels, then each earlier map's mean, max"
#: the share of held-out scores that the exponential tail is fitted to
TAIL_SHARE = 0.1


def describe_images(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pooled statistics of feature maps [(B, C_i, h_i, w_i), ...] -> (B, descriptor_size) float32.

    The last map (what the fusion reads), per channel: the mean, the maximum, the standard
    deviation, and the mean weighted by each location's distance from the picture's background.
    Earlier maps, per channel: the mean and the maximum (their colour detail, for two cheap
    reductions). This runs inside every batch, after the forward pass: a few batched ops.
    """
    *earlier, last = (m.float() for m in maps)
    b, c, h, w = last.shape
    flat = last.flatten(2)  # (B, C, hw)
    # the background: per channel, the median over a 4x4 grid of locations (cheap, and enough)
    step_h, step_w = max(1, h // 4), max(1, w // 4)
    grid = last[:, :, step_h // 2 :: step_h, step_w // 2 :: step_w].flatten(2)
    middle = (grid.shape[2] - 1) // 2
    background = grid.sort(dim=2).values[:, :, middle : middle + 1]  # (B, C, 1), the lower median

    mean = flat.mean(2, keepdim=True)  # (B, C, 1)
    squares = flat * flat
    variance = (squares.mean(2, keepdim=True) - mean * mean).clamp_min(0)
    # per location, ||f - background||^2 over the channels, as matrix products
    ones = flat.new_ones(b, 1, c)
    distance = torch.bmm(ones, squares) - 2 * torch.bmm(background.transpose(1, 2), flat)
    distance = (distance + background.square().sum(1, keepdim=True)).clamp_min(0).sqrt() + 1e-6
    weight = (distance / distance.sum(dim=2, keepdim=True)).transpose(1, 2)  # (B, hw, 1)
    foreground = torch.bmm(flat, weight)  # (B, C, 1)
    stats = torch.cat([mean, flat.amax(2, keepdim=True), variance.sqrt(), foreground], dim=2)
    parts = [stats.transpose(1, 2).flatten(1)]  # (B, 4C): every channel's mean, then max, ...
    for feature_map in earlier:
        early = feature_map.flatten(2)
        parts += [early.mean(2), early.amax(2)]
    return torch.cat(parts, dim=1)


def descriptor_size(channels: Sequence[int]) -> int:
    """The length of ``describe_images``' vectors for feature maps of these channel counts."""
    return len(STATISTICS) * channels[-1] + len(EARLY_STATISTICS) * sum(channels[:-1])


@dataclass
class FamiliarityModel:
    """Fitted statistics: score pictures, and turn scores into familiarity in [0, 1]."""

    offset: torch.Tensor  # (D,) the mean descriptor of the fitted pictures
    whiten: torch.Tensor  # (D, D) L, with L L^T the shared precision: ||(x - m) L||^2 is Mahalanobis
    centers: torch.Tensor  # (K, D) cluster centres, already offset and whitened
    heldout: torch.Tensor  # (n,) held-out pictures' scores, sorted
    tail_start: float  # the score beyond which TAIL_SHARE of the held-out pictures lie
    tail_scale: float  # mean excess of those scores over tail_start
    info: dict[str, Any] = field(default_factory=dict)  # how it was fitted (for the model card)
    # derived from the above on first use (``scores``): the offset through L, centres transposed
    _folded: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    _heldout_list: list[float] | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.offset.shape[0])

    def scores(self, descriptors: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B,) squared Mahalanobis distance to the nearest cluster (higher: stranger)."""
        x = descriptors.to(self.whiten.dtype)
        if self._folded is None or self._folded[0].dtype != x.dtype:
            self._folded = (
                self.offset.to(x.dtype) @ self.whiten,  # (D,)
                self.centers.T.contiguous(),  # (D, K)
                self.centers.square().sum(1),  # (K,)
            )
        shift, centers_t, centers_sq = self._folded
        z = torch.addmm(-shift, x, self.whiten)  # (x - offset) L, in one op
        # ||z - c||^2 = ||z||^2 - 2 z.c + ||c||^2: one matrix product (cdist is slower here)
        nearest = torch.addmm(centers_sq, z, centers_t, alpha=-2).amin(dim=1)  # (B,)
        return (z.square().sum(1) + nearest).clamp_min(0)

    def familiarity(self, scores: torch.Tensor) -> list[float]:
        """The share of held-out training pictures that scored at least this badly (tail extrapolated)."""
        if self._heldout_list is None:
            self._heldout_list = self.heldout.tolist()  # plain floats: a batch is a few bisections
        heldout, n = self._heldout_list, len(self._heldout_list)
        shares = []
        for score in scores.tolist():
            if score > self.tail_start:
                share = TAIL_SHARE * math.exp(-(score - self.tail_start) / self.tail_scale)
            else:
                share = (n - bisect.bisect_left(heldout, score)) / n  # held-out scores >= score
            shares.append(float(f"{share:.4g}"))  # 4 significant digits say enough
        return shares

    def threshold_score(self, min_familiarity: float) -> float:
        """The score at which familiarity falls to ``min_familiarity`` (for the card and /health)."""
        if min_familiarity >= TAIL_SHARE:
            n = len(self.heldout)
            return float(self.heldout[min(n - 1, int((1 - min_familiarity) * n))])
        if min_familiarity <= 0:
            return math.inf
        return self.tail_start + self.tail_scale * math.log(TAIL_SHARE / min_familiarity)

    def save(self, path: Path) -> None:
        tensors = {
            "offset": self.offset.float().contiguous(),
            "whiten": self.whiten.float().contiguous(),
            "centers": self.centers.float().contiguous(),
            "heldout": self.heldout.double().contiguous(),
        }
        header = {
            "format_version": FORMAT_VERSION,
            "method": METHOD,
            "statistics": list(STATISTICS),
            "descriptor": DESCRIPTOR,
            "tail_share": TAIL_SHARE,
            "tail_start": self.tail_start,
            "tail_scale": self.tail_scale,
            **self.info,
        }
        save_file(tensors, str(path), metadata={"familiarity": json.dumps(header)})

    @classmethod
    def load(cls, path: Path) -> FamiliarityModel:
        """Read a package's statistics; raises ``ModelPackageError`` naming the file."""
        try:
            tensors = load_file(str(path), device="cpu")
            with safe_open(str(path), framework="pt") as f:
                header = json.loads((f.metadata() or {}).get("familiarity", "{}"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelPackageError(f"{path} is not a valid familiarity file: {exc}") from exc
        version = header.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION or header.get("method") != METHOD:
            raise ModelPackageError(
                f"{path}: familiarity format {version!r} / method {header.get('method')!r} is not one "
                f"this version of vqa-chat reads ({FORMAT_VERSION}, {METHOD}); upgrade vqa-chat"
            )
        if header.get("descriptor") != DESCRIPTOR:
            raise ModelPackageError(
                f"{path} was fitted to another layout of image features ({header.get('descriptor')!r}); "
                "recompute it with `python -m vqa_engine.tools.calibrate`"
            )
        try:
            offset, whiten, centers = tensors["offset"], tensors["whiten"], tensors["centers"]
            heldout = tensors["heldout"].double()
            tail_start, tail_scale = float(header["tail_start"]), float(header["tail_scale"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelPackageError(f"{path}: missing {exc}") from exc
        d = offset.shape[0]
        if whiten.shape != (d, d) or centers.ndim != 2 or centers.shape[1] != d or heldout.ndim != 1:
            raise ModelPackageError(f"{path}: the statistics' shapes do not agree")
        if len(heldout) == 0 or not tail_scale > 0:
            raise ModelPackageError(f"{path}: no held-out calibration")
        info = {k: v for k, v in header.items() if k not in _HEADER_KEYS}
        return cls(offset, whiten, centers, heldout, tail_start, tail_scale, info)


_HEADER_KEYS = {
    "format_version",
    "method",
    "statistics",
    "descriptor",
    "tail_share",
    "tail_start",
    "tail_scale",
}


def fit_familiarity(
    descriptors: torch.Tensor,
    *,
    clusters: int = 24,
    holdout: float = 0.2,
    seed: int = 0,
    shrinkage: float = 1e-3,
    info: dict[str, Any] | None = None,
) -> FamiliarityModel:
    """Fit on (N, D) descriptors of training pictures: ``holdout`` of them (chosen by ``seed``)
    are kept out of the fit and only calibrate the familiarity scale."""
    x = descriptors.double()
    n = x.shape[0]
    n_held = max(1, round(n * holdout))
    if n - n_held < 2:
        raise ValueError(f"too few pictures to fit familiarity statistics ({n})")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    fit, held = x[order[n_held:]], x[order[:n_held]]

    offset = fit.mean(0)
    global_whiten = _whitener(_shrunk_covariance(fit - offset, shrinkage))
    k = max(1, min(clusters, len(fit) // 20))
    labels = kmeans((fit - offset) @ global_whiten, k, generator=generator)
    groups = [fit[labels == c] for c in range(k) if bool((labels == c).any())]
    means = torch.stack([g.mean(0) for g in groups])  # (K, D)
    residuals = torch.cat([g - g.mean(0) for g in groups])
    whiten = _whitener(_shrunk_covariance(residuals, shrinkage, dof=len(fit) - len(groups)))

    model = FamiliarityModel(
        offset=offset,
        whiten=whiten,
        centers=(means - offset) @ whiten,
        heldout=torch.empty(0),
        tail_start=0.0,
        tail_scale=1.0,
        info={
            "clusters": len(groups),
            "pictures_fitted": len(fit),
            "pictures_held_out": len(held),
            **(info or {}),
        },
    )
    held_scores = model.scores(held).sort().values
    tail_start = float(torch.quantile(held_scores, 1 - TAIL_SHARE))
    excess = held_scores[held_scores > tail_start] - tail_start
    tail_scale = float(excess.mean()) if len(excess) else 0.0
    model.heldout = held_scores
    model.tail_start = tail_start
    model.tail_scale = max(tail_scale, 1e-6 * (abs(tail_start) + 1.0))
    return model


def _shrunk_covariance(centred: torch.Tensor, shrinkage: float, dof: int | None = None) -> torch.Tensor:
    """Sample covariance pulled a little towards a scaled identity, so it is always invertible."""
    d = centred.shape[1]
    covariance = centred.T @ centred / max(1, (dof if dof is not None else len(centred) - 1))
    scale = torch.trace(covariance) / d
    eye = torch.eye(d, dtype=covariance.dtype)
    return (1 - shrinkage) * covariance + shrinkage * max(float(scale), 1e-12) * eye


def _whitener(covariance: torch.Tensor) -> torch.Tensor:
    """L with L L^T = covariance^-1 (so that ||x L||^2 = x^T covariance^-1 x)."""
    return torch.linalg.cholesky(torch.linalg.inv(covariance))


def kmeans(x: torch.Tensor, k: int, *, generator: torch.Generator, iterations: int = 50) -> torch.Tensor:
    """Cluster labels (N,) of the rows of ``x``: k-means++ seeding, then Lloyd's iterations."""
    n = x.shape[0]
    centers = x[torch.randint(n, (1,), generator=generator)]
    while len(centers) < k:
        nearest = torch.cdist(x, centers).amin(dim=1).square()
        if float(nearest.sum()) <= 0:
            break  # fewer distinct points than clusters
        pick = torch.multinomial(nearest / nearest.sum(), 1, generator=generator)
        centers = torch.cat([centers, x[pick]])
    labels = torch.cdist(x, centers).argmin(dim=1)
    for _ in range(iterations):
        centers = torch.stack(
            [x[labels == c].mean(0) if bool((labels == c).any()) else centers[c] for c in range(len(centers))]
        )
        new = torch.cdist(x, centers).argmin(dim=1)
        if torch.equal(new, labels):
            break
        labels = new
    return labels
