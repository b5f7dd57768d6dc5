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


def user_yaml(i: int, changed: bool, enabled_fraction: float = 0.9) -> str:
    rng = random.Random(i)
    enabled = rng.random() < enabled_fraction
    conference_id = f"{1000000 + i * 7 % 8999999:07d}"
    if changed:
        conference_id = f"{9000000 + i % 999999:07d}"
    lines = [
        f"  user{i:06d}@contoso.com:",
        f"    display_name: User {i:06d}",
        f"    license: {'true' if enabled else 'false'}",
        "    provider: Microsoft",
        f'    conference_id: "{conference_id}"',
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
