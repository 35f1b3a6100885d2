import torch

from forenx.modeling.heads import answer_prefix_ids, mapper_loss, prob_fake, verdict_slots, verdict_token_ids
from forenx.modeling.tokenizer import load_tokenizer
from forenx.schema import ANSWER_PREFIX, VERDICT_WORDS


def test_verdict_ids_are_the_words_first_tokens_after_the_prefix():
    tokenizer = load_tokenizer()
    prefix, ids = answer_prefix_ids(tokenizer), verdict_token_ids(tokenizer)
    assert ids[0] != ids[1]
    for word, token in zip(VERDICT_WORDS, ids):
        in_context = tokenizer(ANSWER_PREFIX + word, add_special_tokens=False)["input_ids"]
        assert in_context[: len(prefix)] == prefix and in_context[len(prefix)] == token
        assert word.startswith(tokenizer.decode([token]))


def test_slot_comes_from_the_labels_not_an_offset():
    prefix = [7, 8]
    labels = torch.tensor([
        [-100, -100, -100, 7, 8, 31, 5],  # verdict token 31 at position 5
        [-100, 7, 8, 30, 5, -100, -100],  # right-padded row, verdict at 3
        [-100, -100, 1, 2, 3, 4, 5],      # no prefix: no slot
    ])
    assert verdict_slots(labels, prefix).tolist() == [5, 3, -1]


def test_mapper_loss_and_probability():
    prefix, ids = [7, 8], [30, 31]  # [real, fake]
    labels = torch.tensor([[-100, 7, 8, 31, 5], [-100, 7, 8, 30, 5], [-100, -100, 1, 2, 3]])
    logits = torch.zeros(3, 5, 40)
    logits[0, 2, 31] = 2.0   # row 0 predicts fake at the slot (logit t predicts token t + 1)
    logits[1, 2, 31] = 1.0   # row 1 wrongly leans fake
    loss, probs = mapper_loss(logits, labels, ids, prefix, temperature=1.0)
    expected = torch.nn.functional.cross_entropy(torch.tensor([[0.0, 2.0], [0.0, 1.0]]), torch.tensor([1, 0]))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(probs[:2], torch.sigmoid(torch.tensor([2.0, 1.0])))
    assert torch.isnan(probs[2])
    # A temperature flattens the probability.
    assert prob_fake(torch.tensor([0.0, 2.0]), temperature=4.0) < prob_fake(torch.tensor([0.0, 2.0]))
