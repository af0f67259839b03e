#!/usr/bin/env python3
"""Renders a kustomization without kubectl: the subset of kustomize that deploy/k8s uses.

Supported: `resources` (YAML files and directories holding a kustomization), `images`
(`newName`, `newTag`, `digest`), and `patches` given by `path` or inline `patch`, each either an
RFC 6902 JSON patch (a YAML list of operations, with a `target` of `kind`, `name` and
optionally `namespace`) or a strategic-merge patch that is exactly `$patch: delete`.
Anything else in a kustomization is refused with the field named, so the renderer can never
silently produce something kustomize would not. It is also stricter than kustomize in one way:
a patch that matches no object is an error.

scripts/validate-deploy compares its output with `kubectl kustomize` wherever kubectl is
installed. Usage: kustomize_render.py DIR  (prints the objects as a YAML stream)
"""

import copy
import re
import sys
from pathlib import Path

import jsonpatch
import yaml

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "images", "patches"}
SUPPORTED_TARGET = {"kind", "name", "namespace"}


class RenderError(Exception):
    pass


def key(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("kind"), meta.get("namespace"), meta.get("name"))


def describe(k):
    kind, ns, name = k
    return f"{kind} {ns + '/' if ns else ''}{name}"


def load_yaml_stream(path):
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        raise RenderError(f"{path}: not valid YAML: {e}") from e
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise RenderError(f"{path}: every document must be an object with apiVersion and kind")
    return docs


def kustomization_file(directory):
    for name in KUSTOMIZATION_FILES:
        p = directory / name
        if p.is_file():
            return p
    raise RenderError(f"{directory}: no kustomization.yaml")


def render(directory):
    directory = Path(directory)
    kpath = kustomization_file(directory)
    k = yaml.safe_load(kpath.read_text()) or {}
    unsupported = set(k) - SUPPORTED_FIELDS
    if unsupported:
        raise RenderError(
            f"{kpath}: unsupported field(s) {sorted(unsupported)}; this renderer handles "
            f"{sorted(SUPPORTED_FIELDS)} (extend scripts/kustomize_render.py or use kubectl kustomize)"
        )
    objects = []
    seen = {}
    for entry in k.get("resources") or []:
        if "://" in entry or entry.startswith("git@"):
            raise RenderError(f"{kpath}: remote resource {entry!r} is not supported")
        p = (directory / entry).resolve()
        if p.is_dir():
            loaded = render(p)
        elif p.is_file():
            loaded = load_yaml_stream(p)
        else:
            raise RenderError(f"{kpath}: resource {entry!r} does not exist")
        for obj in loaded:
            kk = key(obj)
            if kk in seen:
                raise RenderError(f"{kpath}: {describe(kk)} is defined twice ({seen[kk]} and {entry})")
            seen[kk] = entry
            objects.append(obj)
    for image in k.get("images") or []:
        apply_image(objects, image, kpath)
    for n, patch in enumerate(k.get("patches") or []):
        objects = apply_patch(objects, patch, directory, f"{kpath}: patches[{n}]")
    return objects


def split_image(ref):
    """(name, tag, digest) of an image reference; the tag is after the last ':' of the last path
    segment (a registry port is not a tag)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        ref, tag = ref.rsplit(":", 1)
    return ref, tag, digest


def containers(node):
    if isinstance(node, dict):
        for field in ("containers", "initContainers"):
            for c in node.get(field) or []:
                if isinstance(c, dict) and "image" in c:
                    yield c
        for v in node.values():
            yield from containers(v)
    elif isinstance(node, list):
        for v in node:
            yield from containers(v)


def apply_image(objects, image, kpath):
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown or "name" not in image:
        raise RenderError(f"{kpath}: images entry {image} must have name and only newName/newTag/digest")
    for obj in objects:
        for c in containers(obj.get("spec")):
            name, tag, digest = split_image(c["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                tag, digest = None, image["digest"]
            elif "newTag" in image:
                tag, digest = str(image["newTag"]), None
            c["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def matches(obj, target):
    kind, ns, name = key(obj)
    for field, value in (("kind", kind), ("name", name), ("namespace", ns)):
        # kustomize reads target fields as anchored regular expressions.
        if field in target and not re.fullmatch(str(target[field]), value or ""):
            return False
    return True


def apply_patch(objects, patch, directory, where):
    if ("path" in patch) == ("patch" in patch):
        raise RenderError(f"{where}: give exactly one of path and patch")
    unknown = set(patch) - {"path", "patch", "target"}
    if unknown:
        raise RenderError(f"{where}: unsupported field(s) {sorted(unknown)}")
    text = (directory / patch["path"]).read_text() if "path" in patch else patch["patch"]
    body = yaml.safe_load(text)
    target = patch.get("target")
    if target is not None and set(target) - SUPPORTED_TARGET:
        raise RenderError(f"{where}: target fields {sorted(set(target) - SUPPORTED_TARGET)} are not supported")
    if isinstance(body, list):
        if target is None:
            raise RenderError(f"{where}: a JSON 6902 patch needs a target")
        hits = [o for o in objects if matches(o, target)]
        if not hits:
            raise RenderError(f"{where}: target {target} matches no object")
        out = []
        for obj in objects:
            if any(obj is h for h in hits):
                try:
                    obj = jsonpatch.JsonPatch(body).apply(copy.deepcopy(obj))
                except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                    raise RenderError(f"{where}: cannot apply to {describe(key(obj))}: {e}") from e
            out.append(obj)
        return out
    if isinstance(body, dict) and body.get("$patch") == "delete":
        spec = {"kind": body.get("kind"), "name": (body.get("metadata") or {}).get("name")}
        ns = (body.get("metadata") or {}).get("namespace")
        if ns:
            spec["namespace"] = ns
        spec = {k: re.escape(v) for k, v in spec.items() if v}
        if target:
            spec.update(target)
        kept = [o for o in objects if not matches(o, spec)]
        if len(kept) == len(objects):
            raise RenderError(f"{where}: $patch: delete matches no object")
        return kept
    raise RenderError(
        f"{where}: only JSON 6902 patches and `$patch: delete` are supported, not general "
        "strategic-merge patches"
    )


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        objects = render(argv[1])
    except RenderError as e:
        print(f"kustomize_render: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
