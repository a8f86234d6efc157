"""The production compose file and the image agree with the code: settings, commands, packages.

Docker is not needed: these read ``docker-compose.yml``, ``Dockerfile`` and ``.dockerignore`` as
text and compare them with ``core.settings``, ``rentan.cli``, ``workflows.search_attributes``
and ``pyproject.toml``.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from core.settings import Settings
from rentan.cli import app as cli_app
from workflows.search_attributes import ALL as SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"

EXPECTED_SERVICES = {
    "postgres",
    "temporal-admin-tools",
    "temporal",
    "temporal-ui",
    "api",
    "worker",
    "migrate",
    "bpjs-sim",
    "audit-checkpoint",
}
APP_COMMANDS = {
    "api": ("api",),
    "worker": ("worker",),
    "migrate": ("db", "upgrade"),
    "bpjs-sim": ("bpjs-sim",),
    "audit-checkpoint": ("audit", "checkpoint", "--out", "/checkpoints", "--every", "3600"),
}
ALLOWED_COMMANDS = set(APP_COMMANDS.values())
REQUIRED_SECRETS = ("RENTAN_PAYLOAD_KEY", "RENTAN_ID_SECRET")
# Packages a development checkout has that the image leaves out (pyproject.toml says so).
DEVELOPMENT_ONLY = {"bench"}
# The API tells each enrollment it nominates how long the worker's BPJS calls may take
# (services.nominations.bpjs_timing); the worker's adapter gives up after the same time.
SHARED_BY_API_AND_WORKER = ("RENTAN_BPJS_TIMEOUT_S", "RENTAN_BPJS_MAX_BACKOFF_S")
SCHEMA_DIRS = {
    "temporal": "/etc/temporal/schema/postgresql/v12/temporal/versioned",
    "temporal_visibility": "/etc/temporal/schema/postgresql/v12/visibility/versioned",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict), "docker-compose.yml must be a mapping"
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services mapping"
    return found


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whichever of the two compose spellings it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def argv(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(shlex.split(value))
    return tuple(str(part) for part in value)


def script_text(service: dict[str, Any]) -> str:
    return " ".join((*argv(service.get("entrypoint")), *argv(service.get("command"))))


def setup_service(services: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    matches = [
        (name, service)
        for name, service in services.items()
        if "search-attribute create" in script_text(service)
    ]
    assert len(matches) == 1, f"expected one service registering search attributes: {matches}"
    return matches[0]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        result.append((keyword.upper(), rest.strip()))
    return result


def copied_sources(text: str) -> set[str]:
    sources: set[str] = set()
    for keyword, rest in dockerfile_instructions(text):
        if keyword != "COPY":
            continue
        parts = [part for part in shlex.split(rest) if not part.startswith("--")]
        sources.update(part.rstrip("/").removeprefix("./") for part in parts[:-1])
    return sources


def cli_command_exists(path: tuple[str, ...]) -> bool:
    """Whether ``rentan <path>`` is a leaf command of the Typer app (groups have ``commands``);
    options after the command's words are checked to be among its options."""
    words = path[: next((i for i, w in enumerate(path) if w.startswith("-")), len(path))]
    command: Any = typer.main.get_command(cli_app)
    for name in words:
        subcommands = getattr(command, "commands", None)
        if not isinstance(subcommands, dict) or name not in subcommands:
            return False
        command = subcommands[name]
    options = {o for p in command.params for o in getattr(p, "opts", [])}
    given = {w for w in path if w.startswith("--")}
    return not isinstance(getattr(command, "commands", None), dict) and given <= options


# --- the compose file ---------------------------------------------------------------------------


def test_compose_file_parses_to_services(services: dict[str, dict[str, Any]]) -> None:
    assert services
    assert all(isinstance(service, dict) for service in services.values())


def test_compose_services_all_present(services: dict[str, dict[str, Any]]) -> None:
    missing = EXPECTED_SERVICES - services.keys()
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


def test_compose_images_never_auto_setup(services: dict[str, dict[str, Any]]) -> None:
    offenders = {
        name: service["image"]
        for name, service in services.items()
        if "auto-setup" in str(service.get("image", ""))
    }
    assert not offenders, f"temporalio/auto-setup is deprecated: {offenders}"


def test_temporal_image_is_server(services: dict[str, dict[str, Any]]) -> None:
    image = str(services["temporal"].get("image", ""))
    assert image.split(":", 1)[0] == "temporalio/server"


def test_temporal_env_postgres12_on_created_databases(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["temporal"])
    assert env.get("DB") == "postgres12"
    assert env.get("POSTGRES_SEEDS") == "postgres"
    assert {env.get("DBNAME"), env.get("VISIBILITY_DBNAME")} == set(SCHEMA_DIRS)
    assert env.get("POSTGRES_USER") == environment(services["postgres"]).get("POSTGRES_USER")


def test_temporal_depends_on_admin_tools_completed(services: dict[str, dict[str, Any]]) -> None:
    depends_on = services["temporal"].get("depends_on") or {}
    assert isinstance(depends_on, dict), "temporal needs depends_on with a condition"
    condition = (depends_on.get("temporal-admin-tools") or {}).get("condition")
    assert condition == "service_completed_successfully"


def test_admin_tools_sets_up_both_schemas(services: dict[str, dict[str, Any]]) -> None:
    admin = services["temporal-admin-tools"]
    assert str(admin.get("image", "")).split(":", 1)[0] == "temporalio/admin-tools"
    script = script_text(admin)
    assert "temporal-sql-tool" in script
    assert "--plugin postgres12" in script
    for database, schema_dir in SCHEMA_DIRS.items():
        assert f"--db {database} create-database" in script, database
        assert f"--db {database} setup-schema -v 0.0" in script, database
        assert f"--db {database} update-schema -d {schema_dir}" in script, database


def test_search_attributes_setup_matches_workflows(services: dict[str, dict[str, Any]]) -> None:
    _, service = setup_service(services)
    registered = set(re.findall(r"\bRentan[A-Z]\w*", script_text(service)))
    assert registered == {key.name for key in SEARCH_ATTRIBUTES}
    assert "--type Keyword" in script_text(service)


def test_search_attributes_setup_waits_for_temporal_healthy(
    services: dict[str, dict[str, Any]],
) -> None:
    _, service = setup_service(services)
    assert str(service.get("image", "")).split(":", 1)[0] == "temporalio/admin-tools"
    condition = ((service.get("depends_on") or {}).get("temporal") or {}).get("condition")
    assert condition == "service_healthy"


def test_search_attributes_setup_namespace_is_rentan_namespace(
    services: dict[str, dict[str, Any]],
) -> None:
    _, service = setup_service(services)
    namespaces = {environment(services[name])["RENTAN_TEMPORAL_NAMESPACE"] for name in APP_COMMANDS}
    assert namespaces == {environment(service).get("TEMPORAL_NAMESPACE")}


def test_temporal_ui_env_points_at_server_and_codec(services: dict[str, dict[str, Any]]) -> None:
    ui = services["temporal-ui"]
    env = environment(ui)
    assert str(ui.get("image", "")).split(":", 1)[0] == "temporalio/ui"
    assert env.get("TEMPORAL_ADDRESS") == "temporal:7233"
    assert env.get("TEMPORAL_CODEC_ENDPOINT") == "http://localhost:8000/codec"
    assert [str(port) for port in ui.get("ports", [])] == ["127.0.0.1:8233:8080"]


def test_temporal_ui_is_read_only(services: dict[str, dict[str, Any]]) -> None:
    """The UI has no sign-in: whoever reaches it must not terminate, reset or signal."""
    env = environment(services["temporal-ui"])
    assert env.get("TEMPORAL_DISABLE_WRITE_ACTIONS") == "true"
    assert env.get("TEMPORAL_START_WORKFLOW_DISABLED") == "true"


def test_only_the_api_is_published_beyond_the_hosts_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {
        name: [str(port) for port in service.get("ports", [])]
        for name, service in services.items()
        if service.get("ports")
    }
    assert published == {"api": ["8000:8000"], "temporal-ui": ["127.0.0.1:8233:8080"]}


def test_internal_services_sit_on_a_network_with_no_way_out(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    assert compose["networks"]["backend"] == {"internal": True}
    on_edge = {name for name, service in services.items() if "edge" in service["networks"]}
    # The API serves people; the worker calls BPJS; the UI is bound to the host's loopback.
    assert on_edge == {"api", "worker", "temporal-ui"}
    for name, service in services.items():
        assert "backend" in service["networks"], name


def test_rentan_env_keys_are_settings_fields(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    keys = {key for service in services.values() for key in environment(service)}
    keys |= set(compose.get("x-rentan-env") or {})
    rentan_keys = {key for key in keys if key.startswith("RENTAN_")}
    assert rentan_keys, "no RENTAN_ variable is set anywhere"
    unknown = sorted(
        key
        for key in rentan_keys
        if key.removeprefix("RENTAN_").lower() not in Settings.model_fields
    )
    assert not unknown, f"not fields of core.settings.Settings: {unknown}"


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_rentan_env_values_are_valid_settings(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    # Secrets and the password are interpolated by compose; stand-ins of the right shape here.
    env = environment(services[name])
    values = {
        key.removeprefix("RENTAN_").lower(): value
        for key, value in env.items()
        if key.startswith("RENTAN_") and "${" not in value
    }
    settings = Settings.model_validate(
        {
            **values,
            "payload_key": "A" * 43 + "=",
            "id_secret": "q8Zr2vN1xKp0wT7mLd4sHy9cFb3gJe6uAo5iRn",
            "database_url": "postgresql://rentan:pw@postgres:5432/rentan",
        }
    )
    assert settings.env == "production"
    assert settings.temporal_address == "temporal:7233"
    assert settings.bpjs_base_url == "http://bpjs-sim:8100"


def test_api_and_worker_agree_on_bpjs_timing(services: dict[str, dict[str, Any]]) -> None:
    api, worker = environment(services["api"]), environment(services["worker"])
    for variable in SHARED_BY_API_AND_WORKER:
        assert api.get(variable) == worker.get(variable), variable


def test_worker_metrics_reachable_from_other_containers(
    services: dict[str, dict[str, Any]],
) -> None:
    address = environment(services["worker"]).get("RENTAN_METRICS_ADDRESS", "127.0.0.1:9464")
    settings = Settings.model_validate({"metrics_address": address})
    host = settings.metrics_address.rpartition(":")[0]
    assert settings.metrics_port is not None
    assert host not in ("127.0.0.1", "localhost", "::1"), address


def test_rentan_env_secrets_required_without_default(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_COMMANDS:
        env = environment(services[name])
        for secret in REQUIRED_SECRETS:
            assert re.fullmatch(rf"\$\{{{secret}:\?[^}}]+\}}", env.get(secret, "")), (name, secret)
        assert env.get("RENTAN_DATABASE_URL", "").startswith("postgresql://rentan:"), name
        assert env["RENTAN_DATABASE_URL"].endswith("@postgres:5432/rentan"), name


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_app_service_builds_from_dockerfile(services: dict[str, dict[str, Any]], name: str) -> None:
    build = services[name].get("build")
    if isinstance(build, str):
        build = {"context": build}
    assert isinstance(build, dict), f"{name} is not built from the Dockerfile"
    assert Path(build.get("context", ".")) == Path(".")
    assert build.get("dockerfile", "Dockerfile") == "Dockerfile"


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_app_service_command_is_rentan_subcommand(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    assert argv(service.get("entrypoint")) in ((), ("rentan",)), "entrypoint must stay `rentan`"
    command = argv(service.get("command"))
    assert command in ALLOWED_COMMANDS, f"{name}: `rentan {' '.join(command)}` is not allowed"
    assert command == APP_COMMANDS[name]
    assert cli_command_exists(command), f"`rentan {' '.join(command)}` is not in rentan.cli"


@pytest.mark.parametrize("name", sorted(APP_COMMANDS))
def test_app_service_env_is_production(services: dict[str, dict[str, Any]], name: str) -> None:
    assert environment(services[name]).get("RENTAN_ENV") == "production"


def test_worker_replicas_more_than_one(services: dict[str, dict[str, Any]]) -> None:
    replicas = (services["worker"].get("deploy") or {}).get("replicas", 1)
    assert int(replicas) >= 2
    assert "container_name" not in services["worker"], "container_name prevents replicas"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_app_service_waits_for_migrations_and_setup(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    depends_on = services[name].get("depends_on") or {}
    setup_name, _ = setup_service(services)
    for dependency in ("migrate", setup_name):
        condition = (depends_on.get(dependency) or {}).get("condition")
        assert condition == "service_completed_successfully", (name, dependency)


def test_postgres_has_healthcheck_and_volume(services: dict[str, dict[str, Any]]) -> None:
    postgres = services["postgres"]
    assert str(postgres.get("image", "")).startswith("postgres:16")
    assert postgres.get("healthcheck", {}).get("test")
    assert any(
        str(volume).endswith(":/var/lib/postgresql/data") for volume in postgres.get("volumes", [])
    )


def test_dynamicconfig_mount_source_exists(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["temporal"])
    mounts = [str(volume).split(":") for volume in services["temporal"].get("volumes", [])]
    targets = {mount[1]: mount[0] for mount in mounts if len(mount) >= 2}
    source = targets.get(env.get("DYNAMIC_CONFIG_FILE_PATH", ""))
    assert source, "DYNAMIC_CONFIG_FILE_PATH is not a mounted file"
    assert isinstance(yaml.safe_load((ROOT / source).read_text()), dict)


# --- the image ----------------------------------------------------------------------------------


def test_dockerfile_copies_every_package(dockerfile: str) -> None:
    find = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*").rstrip(".") for pattern in find["include"]}
    missing = packages - DEVELOPMENT_ONLY - copied_sources(dockerfile)
    assert not missing, f"Dockerfile does not COPY: {sorted(missing)}"


def test_dockerfile_copies_modules_and_constraints(dockerfile: str) -> None:
    setuptools = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]
    needed = {f"{module}.py" for module in setuptools.get("py-modules", [])}
    needed |= {"pyproject.toml", "constraints.txt"}
    missing = needed - copied_sources(dockerfile)
    assert not missing, f"Dockerfile does not COPY: {sorted(missing)}"


def test_dockerfile_installs_with_constraints(dockerfile: str) -> None:
    runs = [rest for keyword, rest in dockerfile_instructions(dockerfile) if keyword == "RUN"]
    assert any(re.search(r"pip install .*-c constraints\.txt .*\.(\s|$)", run) for run in runs)


def test_dockerfile_runs_rentan_as_non_root(dockerfile: str) -> None:
    instructions = dockerfile_instructions(dockerfile)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must end on a non-root USER"
    assert ("ENTRYPOINT", '["rentan"]') in instructions
    assert ("CMD", '["api"]') in instructions
    assert any(keyword == "EXPOSE" and "8000" in rest.split() for keyword, rest in instructions)


def test_dockerfile_leaves_the_development_packages_out(dockerfile: str) -> None:
    assert not DEVELOPMENT_ONLY & copied_sources(dockerfile)


def test_dockerignore_excludes_local_state() -> None:
    entries = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    missing = {".venv", "var", ".git", "tests", ".env"} - entries
    assert not missing, f".dockerignore does not exclude: {sorted(missing)}"
