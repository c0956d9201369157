"""A dependency audit that works where only PyPI's project pages are reachable.

pip-audit (``scripts/audit_dependencies.sh``) asks PyPI's per-release JSON API or OSV for the
advisories of each installed version; on a network where neither answers, it cannot audit at all.
PyPI's per-project JSON (``/pypi/<name>/json``) still answers, and it lists the advisories that
affect the project's *latest* release.  So this audits every installed distribution that is at its
latest release, and names the others as not audited (never "no vulnerabilities" for them).

    .venv/bin/python scripts/audit_latest_advisories.py [--runtime] [--strict] [--index https://pypi.org]

``--runtime`` audits only what the service needs at run time (ecard's requirements and theirs,
with the extras ecard asks for), not the test tools; CI runs it so a known advisory in a runtime
dependency fails the build.

Exit status: 1 when an advisory affects an installed version; with ``--strict`` also when a
dependency could not be audited (older than its latest release, or PyPI did not answer).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib import metadata

import httpx
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

SKIP = {"ecard"}  # this project, installed in development mode, is not on PyPI


def installed() -> dict[str, str]:
    found = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name and name not in SKIP:
            found[name] = dist.version
    return dict(sorted(found.items()))


def runtime_closure(root: str = "ecard") -> set[str]:
    """The installed distributions ``root`` needs at run time: its requirements without extras of
    its own, and theirs with the extras asked for, transitively."""
    needed: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is not None and not any(
                requirement.marker.evaluate(e) for e in environments
            ):
                continue
            needed.add(canonicalize_name(requirement.name))
            todo.append((requirement.name, frozenset(requirement.extras)))
    return needed - SKIP


async def latest_and_advisories(
    http: httpx.AsyncClient, name: str
) -> tuple[str, list[dict]] | None:
    try:
        response = await http.get(f"/pypi/{name}/json")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body = response.json()
    return body["info"]["version"], body.get("vulnerabilities") or []


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


async def audit(index: str, runtime_only: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(vulnerable, audited clean, not audited) lines."""
    packages = installed()
    if runtime_only:
        wanted = runtime_closure()
        packages = {name: version for name, version in packages.items() if name in wanted}
    limit = asyncio.Semaphore(8)
    async with httpx.AsyncClient(base_url=index, timeout=20) as http:

        async def one(name: str) -> tuple[str, tuple[str, list[dict]] | None]:
            async with limit:
                return name, await latest_and_advisories(http, name)

        answers = await asyncio.gather(*(one(name) for name in packages))
    vulnerable, clean, unaudited = [], [], []
    for name, answer in answers:
        version = packages[name]
        if answer is None:
            unaudited.append(f"{name} {version}: PyPI did not answer")
            continue
        latest, advisories = answer
        if not same_version(version, latest):
            unaudited.append(
                f"{name} {version}: not the latest release ({latest}); its advisories are not "
                "reachable here"
            )
        elif advisories:
            ids = ", ".join(a.get("id", "?") for a in advisories)
            vulnerable.append(f"{name} {version}: {ids}")
        else:
            clean.append(f"{name} {version}")
    return vulnerable, clean, unaudited


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index", default="https://pypi.org")
    parser.add_argument(
        "--strict", action="store_true", help="fail when a dependency could not be audited"
    )
    parser.add_argument(
        "--runtime", action="store_true", help="only the service's run-time dependencies"
    )
    args = parser.parse_args()
    vulnerable, clean, unaudited = asyncio.run(audit(args.index, runtime_only=args.runtime))
    total = len(vulnerable) + len(clean) + len(unaudited)
    print(
        f"{total} installed distributions: {len(clean)} audited with no known advisory, "
        f"{len(vulnerable)} with advisories, {len(unaudited)} not audited"
    )
    for title, lines in (("ADVISORIES", vulnerable), ("NOT AUDITED", unaudited)):
        if lines:
            print(f"\n{title}:")
            print("\n".join(f"  {line}" for line in lines))
    return 1 if vulnerable or (args.strict and unaudited) else 0


if __name__ == "__main__":
    sys.exit(main())
