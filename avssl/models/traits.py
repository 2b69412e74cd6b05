"""What a method is and can do, declared once on its class.

:class:`~avssl.models.base.AVModel` inherits these defaults; a method overrides, in its own
class body, those that differ for it. Training, evaluation and the tools read them (on a built
model, or on the class registered under ``model.method``: :func:`avssl.models.method_class`)
instead of testing the method's name, so a new method states its properties here and nowhere
else.
"""

from __future__ import annotations

from avssl.config import DataConfig, LossConfig, ModelConfig


class MethodTraits:
    """Class attributes (and one class method) that describe a method.

    Attributes:
        paper: URL of the method's paper.
        has_map: whether :meth:`~avssl.models.base.AVModel.visual_map` and
            :meth:`~avssl.models.base.AVModel.heatmap` return maps (``evaluate.py localize``,
            ``avssl overlay``, ``avssl query --rerank`` and the report's overlays need one). A
            method whose map depends on a setting sets it per instance in ``__init__``.
        needs_calibration: whether ``decision_threshold`` must be set from validation scores
            (contrastive similarities have no natural threshold; two-way heads use 0).
        unit_audio: audio embeddings are unit vectors (a mean of test-time views is
            renormalised).
        shared_space: :meth:`~avssl.models.base.AVModel.embed_audio` and
            :meth:`~avssl.models.base.AVModel.embed_visual` live in one space, compared by dot
            product. False (``l3``): ``evaluate.py retrieval`` goes through a CCA fitted on
            training pairs (:mod:`avssl.eval.cca`), ``avssl index`` and ``avssl query`` through
            one fitted on the index's own window pairs (:mod:`avssl.tools.index_cca`).
        reads_spatial: ``model.spatial`` changes what the model computes (``contrastive``);
            otherwise the setting is not recorded among an index's input settings
            (:mod:`avssl.model_inputs`) and is not named when the model has no map.
        batch_negatives: the loss's only negatives are the batch's other pairs and the hard
            negatives it asks for (:meth:`hard_negative_setting`): a run of one pair per step
            without hard negatives is refused before training (InfoNCE over one pair is 0).
        supports_audio_views: ``model.audio_views`` > 1 is allowed (several augmented views of
            each sound per step).
        supports_domain_adversary: ``loss.domain_adversary`` > 0 is allowed.
        supports_batch_pairs: ``loss.pair_negatives: batch`` is allowed.
    """

    paper: str = ""
    has_map: bool = False
    needs_calibration: bool = False
    unit_audio: bool = False
    shared_space: bool = True
    reads_spatial: bool = False
    batch_negatives: bool = False
    supports_audio_views: bool = False
    supports_domain_adversary: bool = False
    supports_batch_pairs: bool = False

    @classmethod
    def hard_negative_setting(
        cls, model: ModelConfig, data: DataConfig, loss: LossConfig
    ) -> str | None:
        """The config key by which a run asks this method for hard (same clip, time-shifted)
        negatives, when it asks for them; None when it does not.

        The default is the pair sampler's: ``"data.hard_fraction"`` when it is above 0 (the
        batch's ``audio_neg`` is then sometimes time-shifted). Training refuses a run whose
        clips are all too short for the hard negatives it asks for
        (:func:`avssl.train.preflight.hard_negative_error`), and :class:`AVModel` refuses
        ``model.audio.time_shift`` beside ``data.hard_fraction``; a method with a setting of its
        own (``contrastive``: ``"loss.hard_negatives"``) refuses the time shift itself.
        """
        return "data.hard_fraction" if data.hard_fraction > 0 else None
