"""How large the EC2 user-data grows with an admin's init scripts: a typical launch's user-data
rendered with each configured script, measured against EC2's limit when the config is read. Apart
from init_scripts (pure, and imported by the bootstrap) because it renders the bootstrap."""

from __future__ import annotations

from typing import Any

from provisioner import bootstrap
from provisioner.errors import InputError
from provisioner.init_scripts import InitScripts, check_size


def sample_user_data(script: str | None, cloud_name: str) -> str:
    """The agent user-data of a typical launch carrying `script`: what the size check measures."""
    from types import SimpleNamespace

    offer = SimpleNamespace(instance_type="m7i-flex.48xlarge", market="on-demand", region="ap-southeast-2",
                            price=12.3456)
    spec = bootstrap.BootstrapSpec(run_id="", expires_at="2030-01-01T00:00:00Z",
                                   jenkins_url="https://jenkins.example.com/", idle_timeout_s=900,
                                   init_script=script)
    return bootstrap.render_user_data("agent", offer, spec, cloud_name)


def size_problems(config: Any) -> list[tuple[str, str]]:
    """(config path, problem) for each init script that makes the user-data too large for the
    configured cloud (one with a limit: EC2). `config`: a provisioner.config.Config."""
    from provisioner.clouds import registry
    cloud = config.cloud or ""
    if registry.adapter(cloud).user_data_limit is None:
        return []
    scripts = InitScripts.from_config(config, cloud)
    out = []
    for path, expression in [(f"{cloud}.init_script", None)] + [
            (f"labels.{e!r}.init_script", e) for e in config.labels]:
        script = scripts.for_label(expression)
        if script is None or (expression is None and scripts.cloud is None):
            continue
        try:
            check_size(sample_user_data(script, cloud), cloud, path)
        except InputError as exc:
            out.append((path, exc.message))
    return out
