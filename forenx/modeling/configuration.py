"""`ForenXConfig`: the configuration tree of the ForenX model.

ForenX is a LLaVA model with a second vision tower (DINOv2) and a forgery-aware fusion placed
between the CLIP tower and the LLaVA projector. The configuration therefore extends
:class:`transformers.LlavaConfig` (whose ``vision_config`` is the CLIP tower, also reachable as
``clip_config``) with ``dino_config`` and the fusion / probability-mapper settings.
"""

from __future__ import annotations

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import CLIPVisionConfig, Dinov2Config, LlavaConfig
from transformers.configuration_utils import PreTrainedConfig, SubConfigSpec
from transformers.models.auto.configuration_auto import AutoConfig

__all__ = ["CLIP_MEAN", "CLIP_STD", "IMAGENET_MEAN", "IMAGENET_STD", "ForenXConfig"]

#: OpenAI CLIP normalisation statistics (the CLIP branch).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
#: ImageNet statistics (the DINOv2 branch).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@strict
class ForenXConfig(LlavaConfig):
    r"""Configuration of :class:`~forenx.modeling.ForenXForConditionalGeneration`.

    ForenX names for LLaVA fields: ``clip_config`` = ``vision_config``, ``clip_feature_layer`` =
    ``vision_feature_layer`` (default -2: the CLIP layer whose patch tokens are fused).

    Sub-configurations: ``clip_config`` (alias of LLaVA's ``vision_config``; a
    :class:`~transformers.CLIPVisionConfig`), ``dino_config`` (a :class:`~transformers.Dinov2Config`)
    and ``text_config`` (any causal LM configuration). Both towers see the same ``image_size`` so
    their patch grids align; the constructor sets both towers' ``image_size`` to it and checks the grids.

    Fusion: ``fusion_dim`` (attention width; default: the CLIP width), ``fusion_heads``,
    ``fusion_mlp_ratio``, ``fusion_attention_bias`` (False drops the DINO-attention bias, for ablations),
    ``fusion_bias_hidden`` (width of the 1x1 MLP across heads), ``forensic_width`` (None: off; else
    the width of the forensic stream's conv net, see :mod:`forenx.modeling.forensic`; needs an
    ``image_size`` that is a multiple of 8), ``forensic_residual`` (0: off; else the width of the
    stream's learned full-resolution residual branch, :class:`~forenx.modeling.forensic.ResidualBranch`,
    read next to the fixed maps), ``forensic_jpeg`` (True: the stream also reads the JPEG quantization
    maps of :func:`~forenx.modeling.forensic.jpeg_grid_maps`), ``forensic_boundary`` (True: it also reads the
    fine-detail step maps of :func:`~forenx.modeling.forensic.boundary_maps`), ``forensic_histogram`` (True: it
    also reads the histogram-comb maps of :func:`~forenx.modeling.forensic.histogram_maps`), ``forensic_resampling``
    (True: it also reads the interpolation-fit maps of :func:`~forenx.modeling.forensic.resampling_maps`), ``forensic_members`` (1: one
    stream; more: an ensemble of that many conv nets over the same maps, each trained by its own losses,
    their outputs averaged), ``forensic_loss_weight`` (weight of its own verdict loss)
    and ``forensic_verdict`` (True: the stream's logit is added to the verdict slot's fake-minus-real
    logit difference, so P(fake) = sigmoid(LM difference + forensic logit); needs the stream).
    ``forensic_names`` (``{group: [names]}`` or ``"forgerysynth"``; stored as ``[group, names]``
    pairs in the head's output order; needs the stream) adds the
    anomaly-name head (:mod:`forenx.modeling.names`): it predicts the group of the first anomaly's
    name, trained with weight ``forensic_name_weight``, and its posterior steers the name as it is
    written. The builders tokenise the names into ``forensic_name_ids`` and ``name_prefix_ids``.

    Probability mapper: ``verdict_token_ids`` (``[real, fake]``, the first tokens of the verdict words
    after :data:`forenx.schema.ANSWER_PREFIX`, taken from the tokenizer by the builders),
    ``answer_prefix_ids`` (the prefix's tokens, to find the verdict slot in the labels),
    ``mapper_temperature`` and ``mapper_loss_weight`` (lambda of ``loss = lm + lambda * CE``), and
    ``mapper_bias``, added to the verdict slot's fake-minus-real logit difference (before the
    temperature) like the forensic logit. Temperature and bias are what post-hoc calibration
    (:func:`forenx.evaluation.calibration.calibrate`, ``forenx model calibrate``) fits on a held-out split.
    ``sharpening_evidence_weight`` (at least 0; 0 = off): the model adds this times the image's
    unsharp-mask trace (:func:`forenx.modeling.sharpening.sharpening_score`, untrained) to that
    difference too; ``forenx model calibrate --sharpening`` fits it with the temperature and bias.

    >>> config = ForenXConfig(image_size=56, clip_config={"hidden_size": 32, "patch_size": 14,
    ...     "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    ...     dino_config={"hidden_size": 24, "patch_size": 14, "num_hidden_layers": 1, "num_attention_heads": 2})
    >>> config.clip_config.image_size, config.fusion_dim, config.num_image_tokens
    (56, 32, 16)
    """

    model_type = "forenx"
    attribute_map: ClassVar[dict[str, str]] = {"image_token_id": "image_token_index", "clip_config": "vision_config",
                     "clip_feature_layer": "vision_feature_layer"}

    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "vision_config": SubConfigSpec(config_class=CLIPVisionConfig),
        "dino_config": SubConfigSpec(config_class=Dinov2Config),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
    }

    dino_config: dict | PreTrainedConfig | None = None
    image_size: int = 336
    clip_image_mean: list[float] | tuple[float, ...] = CLIP_MEAN
    clip_image_std: list[float] | tuple[float, ...] = CLIP_STD
    dino_image_mean: list[float] | tuple[float, ...] = IMAGENET_MEAN
    dino_image_std: list[float] | tuple[float, ...] = IMAGENET_STD
    fusion_dim: int | None = None
    fusion_heads: int = 8
    fusion_mlp_ratio: float = 4.0
    fusion_attention_bias: bool = True
    fusion_bias_hidden: int = 16
    forensic_width: int | None = None
    forensic_residual: int = 0
    forensic_jpeg: bool = False
    forensic_boundary: bool = False
    forensic_histogram: bool = False
    forensic_resampling: bool = False
    forensic_members: int = 1
    forensic_loss_weight: float = 1.0
    forensic_verdict: bool = False
    forensic_names: dict[str, list[str]] | list | str | None = None
    forensic_name_ids: list[list[list[int]]] | None = None
    name_prefix_ids: list[int] | None = None
    forensic_name_weight: float = 1.0
    verdict_token_ids: list[int] | None = None
    answer_prefix_ids: list[int] | None = None
    mapper_temperature: float = 1.0
    mapper_loss_weight: float = 1.0
    mapper_bias: float = 0.0
    sharpening_evidence_weight: float = 0.0
    freeze_vision: bool = True

    def __post_init__(self, **kwargs: Any):
        # `clip_config=` is the ForenX name of LLaVA's `vision_config`; resolve it before the
        # sub-configs are built so it is converted like any other sub-config.
        clip_config = kwargs.pop("clip_config", None)
        if clip_config is not None:
            self.vision_config = clip_config
        super().__post_init__(**kwargs)
        for tower in (self.vision_config, self.dino_config):
            tower.image_size = self.image_size
        clip_grid = self.image_size // self.vision_config.patch_size
        dino_grid = self.image_size // self.dino_config.patch_size
        if clip_grid != dino_grid:
            raise ValueError(
                f"ForenXConfig: the CLIP grid ({clip_grid}x{clip_grid}, patch {self.vision_config.patch_size}) and "
                f"the DINOv2 grid ({dino_grid}x{dino_grid}, patch {self.dino_config.patch_size}) at image_size="
                f"{self.image_size} differ; use towers with the same patch size."
            )
        if self.forensic_width is not None and (self.forensic_width < 4 or self.forensic_width % 4
                                                or self.image_size % 8):
            raise ValueError(f"ForenXConfig: forensic_width={self.forensic_width} must be a positive multiple of 4 "
                             f"(GroupNorm groups) and image_size={self.image_size} a multiple of 8 (its block grid).")
        if self.forensic_residual and (self.forensic_residual < 0 or self.forensic_residual % 4
                                       or not self.forensic_width):
            raise ValueError(f"ForenXConfig: forensic_residual={self.forensic_residual} must be 0 (off) or a positive "
                             "multiple of 4 (GroupNorm groups), and needs the forensic stream (forensic_width).")
        for option in ("forensic_jpeg", "forensic_boundary", "forensic_histogram", "forensic_resampling"):
            if getattr(self, option) and not self.forensic_width:
                raise ValueError(f"ForenXConfig: {option}=True adds maps to the forensic stream, but the stream is off; "
                                 f"set forensic_width (e.g. 64) or {option}=False.")
        if self.forensic_members < 1 or (self.forensic_members > 1 and not self.forensic_width):
            raise ValueError(f"ForenXConfig: forensic_members={self.forensic_members} must be 1 (one forensic stream) or "
                             "more (an ensemble of streams), and more than 1 needs the stream (forensic_width).")
        if self.forensic_verdict and not self.forensic_width:
            raise ValueError("ForenXConfig: forensic_verdict=True adds the forensic stream's logit to the verdict "
                             "slot, but the stream is off; set forensic_width (e.g. 64) or forensic_verdict=False.")
        if not self.sharpening_evidence_weight >= 0:  # also refuses NaN
            raise ValueError(f"ForenXConfig: sharpening_evidence_weight={self.sharpening_evidence_weight} must be at "
                             "least 0: an unsharp-mask trace is evidence of an edit, never of a real image.")
        if self.forensic_names is not None and not self.forensic_width:
            raise ValueError("ForenXConfig: forensic_names adds an anomaly-name head to the forensic stream, but "
                             "the stream is off; set forensic_width (e.g. 64) or forensic_names=None.")
        if self.forensic_names is not None and self.forensic_name_ids is None:
            raise ValueError("ForenXConfig: forensic_names is set but its token ids are not; build the model with "
                             "forenx.build_model / tiny_model (they tokenise the names with the tokenizer).")
        if self.fusion_dim is None:
            self.fusion_dim = self.vision_config.hidden_size
        if self.fusion_dim % self.fusion_heads:
            raise ValueError(f"ForenXConfig: fusion_dim={self.fusion_dim} is not divisible by "
                             f"fusion_heads={self.fusion_heads}; change one of them.")
        # The fused tokens are the CLIP patch tokens (CLS dropped), one per grid cell.
        self.image_seq_length = clip_grid * clip_grid
        if self.verdict_token_ids is not None:
            self.verdict_token_ids = [int(i) for i in self.verdict_token_ids]
            assert len(self.verdict_token_ids) == 2 and self.verdict_token_ids[0] != self.verdict_token_ids[1]

    @property
    def num_image_tokens(self) -> int:
        """Placeholder tokens per image (= fused tokens = CLIP patches)."""
        return self.image_seq_length
