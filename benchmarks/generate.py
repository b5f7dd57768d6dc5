"""Synthetic tenants for benchmarks: N users over F files, and a copy with a fraction changed.

python benchmarks/generate.py OUT --users 100000 --files 20 --change 0.01
"""

from __future__ import annotations

import argparse
import random
import shutil
from pathlib import Path

TENANT_YAML = """\
settings:
  automatically_send_emails_to_users: true
  pin_length: 6
bridge:
  numbers:
    - {number: +14255550100, type: toll, location: "Redmond, WA"}
    - {number: +12065550123, type: toll, location: "Seattle, WA"}
    - {number: +18005550199, type: toll_free}
  default_number: +14255550100
email:
  locale: en
"""


def is_enabled(i: int, enabled_fraction: float) -> bool:
    return random.Random(i).random() < enabled_fraction


def conference_id(i: int, changed: bool) -> str:
    return f"{9000000 + i % 999999:07d}" if changed else f"{1000000 + i * 7 % 8999999:07d}"


def user_yaml(i: int, changed: bool, enabled_fraction: float = 0.9) -> str:
    enabled = is_enabled(i, enabled_fraction)
    lines = [
        f"  user{i:06d}@contoso.com:",
        f"    display_name: User {i:06d}",
        f"    license: {'true' if enabled else 'false'}",
        "    provider: Microsoft",
        f'    conference_id: "{conference_id(i, changed)}"',
    ]
    if i % 3 == 0:
        lines.append("    dial_in_number: +12065550123")
    if i % 5 == 0:
        lines.append("    toll_free_number: +18005550199")
    if i % 7 == 0:
        lines.append("    locale: fr")
    return "\n".join(lines) + "\n"


def write_tenant(
    root: Path,
    users: int,
    files: int,
    changed: set[int],
    enabled_fraction: float = 0.9,
    name: str = "big",
) -> Path:
    folder = root / name
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "users").mkdir(parents=True)
    (folder / "tenant.yaml").write_text(TENANT_YAML)
    per_file = -(-users // files)
    for f in range(files):
        chunk = range(f * per_file, min(users, (f + 1) * per_file))
        body = "".join(user_yaml(i, i in changed, enabled_fraction) for i in chunk)
        (folder / "users" / f"part{f:02d}.yaml").write_text("users:\n" + body)
    return folder


EXPORT_COLUMNS = ("Identity", "SipAddress", "DisplayName", "ConferenceId", "ServiceNumber",
                  "TollFreeServiceNumber", "BridgeName")  # fmt: skip
"""``Get-CsOnlineDialInConferencingUser``'s columns that drift reads (no License, no Provider)."""


def write_export(path: Path, users: int, enabled_fraction: float = 0.9) -> Path:
    """The live export of the unchanged tenant (:func:`write_tenant` with nothing changed) as
    ``Export-Csv`` writes it: a BOM, the ``#TYPE`` line, every value quoted, CRLF; one row per
    enabled user, as the cmdlet lists only those."""
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        out.write("#TYPE Deserialized.DialInConferencingUser\r\n")
        out.write(",".join(f'"{c}"' for c in EXPORT_COLUMNS) + "\r\n")
        for i in range(users):
            if not is_enabled(i, enabled_fraction):
                continue
            row = (
                f"user{i:06d}",
                f"sip:user{i:06d}@contoso.com",
                f"User {i:06d}",
                conference_id(i, False),
                "+12065550123" if i % 3 == 0 else "",
                "+18005550199" if i % 5 == 0 else "",
                "Conference Bridge",
            )
            out.write(",".join(f'"{v}"' for v in row) + "\r\n")
    return path


def changed_users(users: int, fraction: float, seed: int = 7) -> set[int]:
    return set(random.Random(seed).sample(range(users), int(users * fraction)))


def changed_in_one_file(users: int, files: int, fraction: float, seed: int = 7) -> set[int]:
    """``fraction`` of the users of the first file (``part00.yaml``)."""
    per_file = -(-users // files)
    first = range(min(users, per_file))
    return set(random.Random(seed).sample(first, max(1, int(len(first) * fraction))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--change", type=float, default=0.01)
    args = parser.parse_args()
    write_tenant(args.out / "before", args.users, args.files, set())
    write_tenant(args.out / "after", args.users, args.files, changed_users(args.users, args.change))


if __name__ == "__main__":
    main()
