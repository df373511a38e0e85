import pytest

from asrprune.data.text import has_digits, normalize_transcript


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("In the beginning, God created the heavens.", "IN THE BEGINNING GOD CREATED THE HEAVENS"),
        ("Don't be afraid!", "DON'T BE AFRAID"),
        ("\u2018Whither goest thou?\u2019 he said", "WHITHER GOEST THOU HE SAID"),
        ("the burnt-offering; the peace offerings", "THE BURNT OFFERING THE PEACE OFFERINGS"),
        ("Élan  café\tnaïve", "ELAN CAFE NAIVE"),
        ("the sons' sheep", "THE SONS SHEEP"),
        ("  ...  ", ""),
    ],
)
def test_normalize_transcript(raw, expected):
    assert normalize_transcript(raw) == expected


def test_normalize_is_idempotent():
    text = normalize_transcript("Then Jesus said, 'Follow me.'")
    assert normalize_transcript(text) == text


def test_has_digits():
    assert has_digits("CHAPTER 3")
    assert not has_digits("CHAPTER THREE")
