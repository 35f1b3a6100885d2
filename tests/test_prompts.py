"""One prompt for every stage."""

from forenx.prompts import FORENSIC_ATTRIBUTES, IMAGE_TOKEN, build_messages, forensic_question


def test_question_names_every_attribute():
    question = forensic_question()
    for name, _ in FORENSIC_ATTRIBUTES:
        assert name in question
    assert '"verdict"' in question


def test_messages_for_training_and_inference_share_the_prompt():
    train, infer = build_messages("ANSWER"), build_messages()
    assert train[:-1] == infer
    assert train[-1] == {"role": "assistant", "content": [{"type": "text", "text": "ANSWER"}]}
    assert infer[-1]["content"][0] == {"type": "image"}
    assert build_messages(system=None)[0]["role"] == "user"
    assert IMAGE_TOKEN == "<image>"
