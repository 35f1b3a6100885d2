"""The anomaly-name head: its groups and token trie, its loss against the written name, and the
evidence it adds while a name is written, the same in forward, generate and after a reload."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForImageTextToText

from forenx.data.synth.manipulations import FAMILIES, FAMILY_NAMES
from forenx.modeling import ForenXConfig, tiny_model
from forenx.modeling.heads import prefix_ends
from forenx.modeling.names import NameTrie, name_group_ids, name_prefix_ids, resolve_name_groups
from forenx.modeling.tokenizer import load_tokenizer
from forenx.schema import ANSWER_PREFIX, Quadruple, render_answer

NOISE, LIGHTING = list(FAMILY_NAMES).index("noise_mismatch"), list(FAMILY_NAMES).index("lighting")
ANSWERS = [
    render_answer("fake", [Quadruple("Inconsistent noise", "Grain differs.", "Added noise.", 60)], "Noise."),
    render_answer("fake", [Quadruple("Inconsistent illumination", "Brighter.", "Relit.", 60),
                           Quadruple("Inconsistent noise", "Grain.", "Noise.", 40)], "Relit."),
    render_answer("real", [], "Nothing odd."),
]


@pytest.fixture(scope="module")
def named():
    """A tiny model with the stream and ForgerySynth's name groups."""
    return tiny_model(seed=0, forensic_width=8, forensic_names="forgerysynth")


def _batch(processor, images):
    from tests.modeling.test_modeling import training_batch

    return training_batch(processor, images, ANSWERS)


def _plain(model):
    """The same weights with the name head's evidence switched off."""
    plain = copy.deepcopy(model)
    plain._name_trie = None
    return plain


def test_groups_resolve_and_tokenise_as_in_an_answer():
    groups = resolve_name_groups("forgerysynth")
    assert list(groups) == list(FAMILIES) and all(len(names) == 3 for names in groups.values())
    tokenizer = load_tokenizer()
    prefix, ids = name_prefix_ids(tokenizer), name_group_ids(tokenizer, groups)
    for group, sequences in zip(groups.values(), ids):
        for name, sequence in zip(group, sequences):
            # first and second anomaly of an answer: the name's tokens follow the prefix in both
            answer = tokenizer(render_answer("fake", [Quadruple(name, "p", "r", 50)] * 2, "s"),
                               add_special_tokens=False)["input_ids"]
            pattern = torch.tensor([prefix + sequence])
            assert prefix_ends(torch.tensor([answer]), pattern[0].tolist()).sum() == 2, name
    for bad, match in [("imagenet", "forgerysynth"), ({"only": ["One"]}, "at least two"),
                       ({"a": ["Same"], "b": ["Same"]}, "both"), ({"a": [""], "b": ["X"]}, "non-empty"),
                       ([["a", ["A"]], ["a", ["B"]]], "twice"), (7, "mapping")]:
        with pytest.raises(ValueError, match=match):
            resolve_name_groups(bad)


def test_config_refuses_a_name_head_it_cannot_run():
    with pytest.raises(ValueError, match="stream is off"):
        tiny_model(seed=0, forensic_names="forgerysynth")
    with pytest.raises(ValueError, match="token ids"):
        ForenXConfig(image_size=56, forensic_width=8, forensic_names={"a": ["A"], "b": ["B"]},
                     clip_config={"patch_size": 14}, dino_config={"patch_size": 14})


def test_name_loss_reads_the_first_written_name_and_trains_the_head(named, images):
    model, processor = named
    batch = _batch(processor, images)
    trie = model._name_trie
    assert trie.targets(batch["labels"]).tolist() == [NOISE, LIGHTING, -100]  # the first name of each answer
    out = model(**batch)
    assert out.name_logits.shape == (3, len(FAMILY_NAMES))
    torch.testing.assert_close(out.name_loss, torch.nn.functional.cross_entropy(
        out.name_logits[:2], torch.tensor([NOISE, LIGHTING])))
    torch.testing.assert_close(out.loss, out.lm_loss + model.config.mapper_loss_weight * out.mapper_loss
                               + model.config.forensic_loss_weight * out.forensic_loss
                               + model.config.forensic_name_weight * out.name_loss)
    model.zero_grad()
    out.lm_loss.backward()  # the LM loss alone reaches the head, through the evidence in the name slot
    assert model.model.fusion.forensic.group_head.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_evidence_is_the_group_posterior_where_names_branch_and_nowhere_else(named, images):
    model, processor = named
    batch = _batch(processor, images)
    with torch.no_grad():
        out, plain = model(**batch), _plain(model)(**batch)
    changed = (out.logits != plain.logits).nonzero()
    ids = batch["input_ids"]
    prefix = model.config.name_prefix_ids
    slots = prefix_ends(ids, prefix)
    # every name slot is changed (the first name token is where all ten families branch) ...
    assert set(map(tuple, slots.nonzero().tolist())) <= set(map(tuple, changed[:, :2].tolist()))
    children = {t for _, tokens, _, _ in model._name_trie.nodes for t in tokens.tolist()}
    assert set(changed[:, 2].tolist()) <= children  # ... only names' tokens move
    # After "Inconsistent" (shared by four families) the next token is decided by the head alone:
    # the gap between " noise" and " illumination" is the log-ratio of the two families' probabilities.
    noise, lighting = (model.config.forensic_name_ids[g][1] for g in (NOISE, LIGHTING))
    common = next(k for k in range(len(noise)) if noise[k] != lighting[k])
    row, start = 0, int(slots[0].float().argmax())
    position = start + common  # predicts the token after "Inconsistent"
    assert ids[row, start + 1:position + 1].tolist() == noise[:common]
    logp = out.name_logits[row].log_softmax(-1)
    gap = (out.logits - plain.logits)[row, position]
    torch.testing.assert_close(gap[noise[common]] - gap[lighting[common]], logp[NOISE] - logp[LIGHTING],
                               atol=1e-4, rtol=0)


def test_generate_adds_the_same_evidence_step_by_step_and_reloads(named, images, tmp_path):
    """generate() feeds the cached forward one token at a time; its logits processor must give the
    scores the whole-sequence forward gives (what training and TRL's log-probabilities see)."""
    model, processor = named
    partial = ANSWERS[0][:ANSWERS[0].index("Inconsistent noise") + len("Inconsistent")]
    assert partial.startswith(ANSWER_PREFIX)
    inputs = processor(images=images[:1], text=[processor.prompt() + partial], return_tensors="pt",
                       add_special_tokens=False)
    with torch.no_grad():
        forward = model(**inputs).logits[:, -1]
        generated = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                   return_dict_in_generate=True)
        plain = _plain(model)(**inputs).logits[:, -1]
    assert not torch.allclose(forward, plain)
    torch.testing.assert_close(generated.scores[0], forward, atol=1e-4, rtol=0)
    assert model._name_sink is None  # cleared after generate
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    # The groups come back in the head's output order (JSON would sort a mapping's keys).
    assert list(resolve_name_groups(loaded.config.forensic_names)) == list(FAMILY_NAMES)
    assert loaded.config.forensic_name_ids == model.config.forensic_name_ids
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits[:, -1], forward)


def test_trie_skips_nodes_that_only_one_group_continues():
    trie = NameTrie([9], [[[1, 2, 3]], [[4, 5]]])
    assert [pattern for pattern, *_ in trie.nodes] == [[9]]  # after "1" or "4" the group is known


class _Boost:
    """A caller's logits processor that makes the random LM write some known name's token."""

    def __init__(self, tokens):
        self.tokens = tokens

    def __call__(self, input_ids, scores):
        scores[:, self.tokens] += 50.0
        return scores


@pytest.mark.parametrize("family", [LIGHTING, NOISE])
def test_a_confident_head_names_its_family_in_generate_and_the_explainers_loop(images, family):
    """After the shared "Inconsistent", a head sure of one family makes both generate() and the
    explainer's fast loop (precomputed image features) write that family's word, after the caller's
    own processors."""
    from transformers import LogitsProcessorList

    from forenx.inference.generation import generate_answers

    model, processor = tiny_model(seed=0, forensic_width=8, forensic_names="forgerysynth")
    head = model.model.fusion.forensic.group_head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(-30.0)
        head.bias[family] = 30.0
    partial = ANSWERS[0][:ANSWERS[0].index("Inconsistent noise") + len("Inconsistent")]
    inputs = processor(images=images[:2], text=[processor.prompt() + partial] * 2, padding=True,
                       padding_side="left", add_special_tokens=False, return_tensors="pt")
    ids = model.config.forensic_name_ids
    name, other = ids[family][1], ids[NOISE if family == LIGHTING else LIGHTING][1]  # "Inconsistent ..."
    k = next(k for k in range(len(name)) if name[k] != other[k])
    expected = name[k]
    # Every family's token that may follow "Inconsistent" (noise, illumination, sharpness, sharpening).
    followers = sorted({seq[k] for group in ids for seq in group if seq[:k] == name[:k] and len(seq) > k})
    assert len(followers) == 4 and expected in followers
    boost = LogitsProcessorList([_Boost(followers)])
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=1, do_sample=False, logits_processor=boost)
        features = model.get_image_features(pixel_values=inputs["pixel_values"])
        fast = generate_answers(model, inputs["input_ids"], inputs["attention_mask"], image_outputs=features,
                                max_new_tokens=1, logits_processor=boost)
    assert generated[:, -1].tolist() == [expected, expected]
    assert [tokens[0] for tokens in fast.tokens] == [expected, expected]
    assert model._name_sink is None
