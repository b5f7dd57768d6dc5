"""PIN generation: right length, digits only, never guessable (SPEC §4)."""

from __future__ import annotations

import pytest

from reconciler.emails import generate_pin, is_trivial


@pytest.mark.parametrize("length", [4, 5, 8, 12])
def test_generated_pins_have_the_length_and_only_digits(length: int) -> None:
    for _ in range(200):
        pin = generate_pin(length)
        assert len(pin) == length
        assert pin.isascii() and pin.isdigit()


def test_generated_pins_are_never_trivial_and_vary() -> None:
    # 20,000 four-digit draws would hit each of the 26 trivial PINs ~50 times if unfiltered.
    pins = [generate_pin(4) for _ in range(20_000)]
    assert not any(is_trivial(pin) for pin in pins)
    assert len(set(pins)) > 5_000


@pytest.mark.parametrize("length", [0, 3, 13, -1])
def test_lengths_outside_the_documented_range_are_refused(length: int) -> None:
    with pytest.raises(ValueError, match=r"4\.\.12"):
        generate_pin(length)


@pytest.mark.parametrize(
    "pin",
    [
        "0000",
        "99999",
        "111111111111",
        "1234",
        "12345",
        "0123",
        "3456789",
        "0123456789",
        "98765",
        "3210",
        "9876543210",
        # a keyboard's number row ends with 0 after 9
        "7890",
        "67890",
        "1234567890",
        "0987",
        "09876",
    ],
)
def test_trivial_pins(pin: str) -> None:
    assert is_trivial(pin)


@pytest.mark.parametrize(
    "pin",
    [
        "1235",
        "48151",
        "1212",
        "8901",  # wrap-around runs are neither numeric nor keyboard-row order
        "9012",
        "1098",
        "13579",
        "112233",
        "123456789012",
        "000000000001",
    ],
)
def test_non_trivial_pins(pin: str) -> None:
    assert not is_trivial(pin)
