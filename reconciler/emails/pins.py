"""Audio Conferencing PINs: ``pin_length`` random digits that nobody could guess (SPEC §4).

Triviality is judged on the digit *sequence*, the way people pick weak PINs:

* all one digit (``00000``, ``7777``);
* a straight run, ascending or descending, in numeric order (``12345``, ``0123``, ``98765``,
  ``3210``);
* a straight run along a keyboard's number row, where ``0`` comes after ``9``
  (``67890``, ``7890``, ``09876``) — these appear in every leaked-password list.

A wrap-around run such as ``8901`` or ``9012`` follows neither the number line nor a key row, so it
is *not* trivial: rejecting it would only shrink the PIN space without defeating a real guess.
Runs are at most ten digits long, so PINs of 11 or 12 digits can only be trivial by repetition.
"""

from __future__ import annotations

import secrets

MIN_LENGTH = 4
MAX_LENGTH = 12
"""PinLength's documented range (Set-CsOnlineDialInConferencingTenantSettings)."""

_RUNS = ("0123456789", "1234567890")
_STRAIGHT_RUNS = (*_RUNS, *(run[::-1] for run in _RUNS))
_DIGITS = "0123456789"


def is_trivial(pin: str) -> bool:
    """True when ``pin`` is one repeated digit or a straight run (see the module docstring)."""
    return len(set(pin)) <= 1 or any(pin in run for run in _STRAIGHT_RUNS)


def generate_pin(length: int) -> str:
    """A fresh PIN of ``length`` digits drawn with :mod:`secrets`, redrawn while trivial.

    Trivial PINs are a vanishing fraction of the space (26 of the 10**4 four-digit PINs), so the
    loop ends after one draw in practice. The length is checked so a bad setting fails loudly
    instead of producing a PIN the service would refuse.
    """
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        raise ValueError(f"PIN length must be {MIN_LENGTH}..{MAX_LENGTH}, not {length}")
    while True:
        pin = "".join(secrets.choice(_DIGITS) for _ in range(length))
        if not is_trivial(pin):
            return pin
