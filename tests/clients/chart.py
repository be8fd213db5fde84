"""The chart under test: `helm template` of charts/keyless (helm 3.19 by scripts/helm), its value
sets in charts/keyless/ci, and what it renders, as Python objects.

    docs = render("gitlab-irsa")                  # charts/keyless/ci/gitlab-irsa-values.yaml
    server = workload(docs, "StatefulSet", "keyless")
    container(server, "keyless")["args"]
"""

from __future__ import annotations

import pathlib
import re
import subprocess

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "keyless"
HELM = REPO / "scripts" / "helm"
RELEASE = NAMESPACE = "keyless"
VALUE_SETS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {out.returncode}:\n{out.stderr}")
    return out


def values_file(name: str) -> str:
    return str(CHART / "ci" / f"{name}-values.yaml")


def template(name: str | None = None, sets: tuple[str, ...] = (), check: bool = True,
             chart: pathlib.Path = CHART, extra_files: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """`helm template keyless CHART -n keyless [-f ci/NAME-values.yaml] [--set ...]`."""
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    if name:
        args += ["-f", values_file(name)]
    for f in extra_files:
        args += ["-f", f]
    for s in sets:
        args += ["--set", s]
    return helm(*args, check=check)


def render(name: str | None = None, sets: tuple[str, ...] = (), extra_files: tuple[str, ...] = ()) -> list[dict]:
    return [d for d in yaml.safe_load_all(template(name, sets, extra_files=extra_files).stdout) if d]


def find(docs: list[dict], kind: str, name: str) -> dict:
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise AssertionError(f"no {kind} {name} in {[(d['kind'], d['metadata']['name']) for d in docs]}")


def workload(docs: list[dict], kind: str, name: str) -> dict:
    return find(docs, kind, name)


def container(workload: dict, name: str) -> dict:
    for c in workload["spec"]["template"]["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def generated_secret_masked(text: str) -> str:
    """helm's output with the chart's generated Secret's values (random on every render) as
    `<random>`, so that golden files compare."""
    docs = text.split("\n---\n")
    for i, doc in enumerate(docs):
        if "# Source: keyless/templates/secrets.yaml" in doc:
            head, _, data = doc.partition("\ndata:\n")
            data = re.sub(r"^(  [a-z-]+): \S+$", r"\1: <random>", data, flags=re.M)
            docs[i] = f"{head}\ndata:\n{data}"
    return "\n---\n".join(docs)


def notes(name: str | None = None, sets: tuple[str, ...] = (), tmp: pathlib.Path | None = None,
          extra_files: tuple[str, ...] = ()) -> str:
    """NOTES.txt as `helm install` prints it. `helm template` leaves NOTES out and `install
    --dry-run` needs a cluster, so a copy of the chart renders it through `tpl` in a ConfigMap."""
    import shutil

    assert tmp is not None
    copy = tmp / "keyless"
    if not copy.exists():
        shutil.copytree(CHART, copy)
        shutil.copy(CHART / "templates" / "NOTES.txt", copy / "notes.in")
        (copy / "templates" / "zz-notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
            "  notes: {{ tpl (.Files.Get \"notes.in\") . | quote }}\n")
    out = template(name, sets, chart=copy, extra_files=extra_files)
    for d in yaml.safe_load_all(out.stdout):
        if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "notes":
            return d["data"]["notes"]
    raise AssertionError("the notes ConfigMap was not rendered")
