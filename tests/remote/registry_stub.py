"""A minimal OCI distribution registry on 127.0.0.1, for the Docker engine to ask about images.

What the OCI distribution spec says a pull client needs, and no more: `GET /v2/` (200: the API is
there); `GET`/`HEAD /v2/<name>/manifests/<tag or digest>` and `/v2/<name>/blobs/<digest>`, with the
content's media type and its `Docker-Content-Digest`; a 404 with an OCI error body for anything
unknown. Plain HTTP: the engine treats registries on 127.0.0.0/8 as insecure, so it speaks HTTP.

Images are made up: an image manifest, its config blob (`os`, `architecture`, `variant`) and no
layers; an image index lists such manifests with their platforms, optionally with a BuildKit
attestation manifest (platform unknown/unknown) as registries hold for recent builds.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
_PATH = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _platform(spec: str) -> dict:
    """`linux/arm64/v8` -> {"os": "linux", "architecture": "arm64", "variant": "v8"}."""
    os_name, arch, *variant = spec.split("/")
    return {"os": os_name, "architecture": arch, **({"variant": variant[0]} if variant else {})}


class RegistryStub:
    """Content by digest, tags naming manifests. `start()` serves on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[str, bytes]] = {}          # digest -> (media type, content)
        self.tags: dict[tuple[str, str], str] = {}             # (repository, tag) -> manifest digest
        self.requests: list[str] = []                          # "METHOD path", in order
        self._server: ThreadingHTTPServer | None = None

    # -- content ---------------------------------------------------------------------------------
    def _put(self, media_type: str, document: dict) -> dict:
        data = json.dumps(document, sort_keys=True).encode()
        digest = _digest(data)
        self.blobs[digest] = (media_type, data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def _image(self, platform: str, docker_types: bool = False) -> dict:
        config = self._put(DOCKER_CONFIG if docker_types else CONFIG,
                           {**_platform(platform), "rootfs": {"type": "layers", "diff_ids": []}, "config": {}})
        kind = DOCKER_MANIFEST if docker_types else MANIFEST
        return self._put(kind, {"schemaVersion": 2, "mediaType": kind, "config": config, "layers": []})

    def _attestation(self, subject: dict) -> dict:
        config = self._put(IN_TOTO, {"_type": "https://in-toto.io/Statement/v0.1"})
        manifest = self._put(MANIFEST, {"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": []})
        return {**manifest, "platform": {"os": "unknown", "architecture": "unknown"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest",
                                "vnd.docker.reference.digest": subject["digest"]}}

    def add_index(self, repository: str, tag: str, platforms: list[str], attestations: bool = False) -> str:
        """An image index over one image per platform (`linux/amd64`, `linux/arm64/v8`, ...)."""
        entries = []
        for spec in platforms:
            entries.append({**self._image(spec), "platform": _platform(spec)})
            if attestations:
                entries.append(self._attestation(entries[-1]))
        index = self._put(INDEX, {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries})
        self.tags[(repository, tag)] = index["digest"]
        return index["digest"]

    def add_image(self, repository: str, tag: str, platform: str, docker_types: bool = False) -> str:
        """A single-platform image: the tag names its manifest directly."""
        manifest = self._image(platform, docker_types)
        self.tags[(repository, tag)] = manifest["digest"]
        return manifest["digest"]

    def lookup(self, repository: str, kind: str, ref: str) -> tuple[str, bytes] | None:
        digest = ref if ref.startswith("sha256:") else self.tags.get((repository, ref)) if kind == "manifests" else None
        return self.blobs.get(digest) if digest else None

    # -- serving ---------------------------------------------------------------------------------
    def start(self) -> int:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(registry: RegistryStub) -> Any:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            registry.requests.append(f"{self.command} {self.path}")
            if self.path.rstrip("/") == "/v2":
                return self._send(200, "application/json", b"{}", None, body)
            m = _PATH.match(self.path)
            found = registry.lookup(m["name"], m["kind"], m["ref"]) if m else None
            if found is None:
                code = "MANIFEST_UNKNOWN" if m and m["kind"] == "manifests" else "BLOB_UNKNOWN" if m else "NAME_UNKNOWN"
                error = json.dumps({"errors": [{"code": code, "message": f"unknown: {self.path}"}]}).encode()
                return self._send(404, "application/json", error, None, body)
            media_type, data = found
            self._send(200, media_type if m["kind"] == "manifests" else "application/octet-stream", data,
                       _digest(data), body)

        def _send(self, status: int, media_type: str, data: bytes, digest: str | None, body: bool) -> None:
            self.send_response(status)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(data)))
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if body:
                self.wfile.write(data)

    return Handler
