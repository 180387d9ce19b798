"""What the functions' cold starts leave unloaded: Powertools' OpenAPI machinery in the API (its own Swagger route,
which loads it on demand, answers exactly what Powertools' ``enable_swagger`` route would) and Powertools' pydantic
parser models in the consumer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.event_handler.openapi.models import OpenAPI

from functions.handlers import openapi as doc
from functions.handlers import static
from functions.handlers.api import app
from functions.handlers.http import RequestScopedResolver
from functions.logic.job_types import registry

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, sys
before = set(sys.modules)
__import__(sys.argv[1])
print(json.dumps([name for name in set(sys.modules) - before if name.startswith(sys.argv[2])]))
"""


def modules_loaded(handler: str, prefix: str) -> set[str]:
    """The modules under ``prefix`` that importing ``handler`` loads in a fresh interpreter, as on a cold start."""
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-c", PROBE, handler, prefix]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_importing_the_api_function_loads_neither_openapi_models_nor_swagger_ui() -> None:
    # When the API's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.api", "aws_lambda_powertools.event_handler.openapi")
    # Then Powertools' OpenAPI models (~0.1 s) and Swagger UI's module (which imports them) were not loaded
    assert "aws_lambda_powertools.event_handler.openapi.params" in loaded  # the probe sees the package's modules
    assert {name for name in loaded if name.endswith((".models", ".swagger_ui", ".oauth2"))} == set()


def test_importing_the_consumer_loads_no_parser_models() -> None:
    # When the consumer's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.consumer", "aws_lambda_powertools.utilities")
    # Then Powertools' batch module was loaded before pydantic: had pydantic come first, it would also have loaded
    # its pydantic parser models of every event source (tens of milliseconds)
    assert "aws_lambda_powertools.utilities.batch" in loaded
    assert {name for name in loaded if ".parser" in name} == set()


class PowertoolsSwagger(RequestScopedResolver):
    """A resolver with Powertools' own Swagger route, showing the API's document."""

    def get_openapi_schema(self, **kwargs: Any) -> OpenAPI:
        return doc.openapi_model(app, **kwargs)  # type: ignore[no-any-return]


def swagger_event(query: dict[str, str] | None, stage: str | None) -> dict[str, Any]:
    path = "/swagger"
    return {
        "httpMethod": "GET",
        "path": path,
        "resource": path,
        "headers": {},
        "multiValueHeaders": {},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {name: [value] for name, value in query.items()} if query else None,
        "body": None,
        "isBase64Encoded": False,
        "requestContext": {"path": f"/{stage}{path}" if stage else path, "stage": stage or "local", "identity": {}},
    }


@pytest.mark.parametrize("stage", [None, "prod"])
@pytest.mark.parametrize("query", [None, {"format": "json"}, {"format": "oauth2-redirect"}])
def test_the_swagger_route_answers_what_powertools_enable_swagger_does(
    query: dict[str, str] | None, stage: str | None
) -> None:
    # Given Powertools' Swagger route, set up as the API used to set it up, over the same document
    reference = PowertoolsSwagger()
    reference.enable_swagger(
        path="/swagger", swagger_base_url=static.SWAGGER_BASE_URL, persist_authorization=True, **doc.openapi_info()
    )
    # When the same request reaches both
    ours = app.resolve(swagger_event(query, stage), None)  # type: ignore[arg-type]
    theirs = reference.resolve(swagger_event(query, stage), None)  # type: ignore[arg-type]
    # Then the answers are the same, byte for byte
    assert ours["statusCode"] == 200
    assert ours == theirs


def test_each_type_module_declares_the_types_the_registry_names_for_it() -> None:
    # Given every module of the job types' package, each imported in a fresh interpreter on its own
    package = ROOT / "functions" / "logic" / "job_types"
    modules = sorted(path.stem for path in package.glob("*.py") if path.stem not in {"__init__", "registry"})
    probe = (
        "import importlib, json, sys; from functions.logic.job_types import registry; "
        "importlib.import_module('functions.logic.job_types.' + sys.argv[1]); "
        "print(json.dumps(sorted(registry._REGISTRY)))"
    )
    declared = {}
    for module in modules:
        out = subprocess.run(
            [sys.executable, "-c", probe, module], cwd=ROOT, capture_output=True, text=True, check=True
        )
        declared |= {name: module for name in json.loads(out.stdout)}
    # Then the registry's map names exactly those types, each with the module that declares it
    assert declared == registry.TYPE_MODULES


def test_importing_a_handler_loads_no_job_type_module() -> None:
    # When the API's or the consumer's handler module is imported in a fresh interpreter
    for handler in ("functions.handlers.api", "functions.handlers.consumer"):
        loaded = modules_loaded(handler, "functions.logic.job_types")
        # Then the registry was, and no type's module (each is imported when its type is first used)
        assert "functions.logic.job_types.registry" in loaded
        assert loaded <= {"functions.logic.job_types", "functions.logic.job_types.registry"}


def test_a_type_is_loaded_when_first_asked_for() -> None:
    # Given a fresh interpreter with the registry imported
    probe = (
        "import json, sys; from functions.logic.job_types import get_job_type, registered_types; "
        "names = registered_types(); before = 'functions.logic.job_types.crawl' in sys.modules; "
        "job_type = get_job_type('crawl-website'); "
        "after = 'functions.logic.job_types.crawl' in sys.modules; "
        "print(json.dumps([before, after, job_type.name, 'crawl-website' in names]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    # Then listing the names loaded nothing, and asking for the type loaded its module
    assert json.loads(out.stdout) == [False, True, "crawl-website", True]


def test_importing_the_api_loads_neither_the_response_models_nor_the_request_body_schemas() -> None:
    # When the API's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.api", "functions.")
    # Then the response models, which only the document needs, were not imported (routes name them)
    assert "functions.handlers.routes.jobs" in loaded
    assert "functions.models.responses" not in loaded


# What only the other routes use: each route imports it when first called.
RARE_ROUTES_LOGIC = {
    "functions.logic.schedules",
    "functions.logic.schedules_cron",
    "functions.models.schedules",
    "functions.dal.schedules",
    "functions.logic.batches",
    "functions.dal.batches",
    "functions.logic.dependencies",
    "functions.dal.dependencies",
    "functions.logic.pauses",
    "functions.dal.pauses",
    "functions.logic.ingest",
    "functions.dal.secrets",
    "functions.logic.callbacks",
    "functions.logic.limits",
}


def test_importing_the_api_loads_only_what_its_common_path_needs() -> None:
    # When the API's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.api", "functions.")
    # Then what POST /jobs and GET /jobs/{id} use was loaded, and the logic of the rarer routes was not
    assert {"functions.logic.enqueue", "functions.logic.waiting", "functions.logic.rate_limits"} <= loaded
    assert "functions.handlers.routes.schedules" in loaded  # the routes are declared
    assert loaded & RARE_ROUTES_LOGIC == set()


# What a record of a job in no fan-out batch never uses: the batches' store and settler, and the producing side's
# logic (enqueueing, its request models, the sweeper's pass), which only the batches' settling and the sweeper use.
CONSUMER_RARE_LOGIC = {
    "functions.logic.batches",
    "functions.dal.batches",
    "functions.logic.enqueue",
    "functions.models.requests",
    "functions.logic.sweep",
    "functions.logic.rate_limits",
    "functions.dal.key_rates",
}


def test_importing_the_consumer_loads_what_each_invocation_uses() -> None:
    # When the consumer's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.consumer", "functions.")
    # Then the pauses, limits and callbacks each invocation builds were loaded with it, not at its first record
    assert {
        "functions.logic.pauses",
        "functions.dal.pauses",
        "functions.logic.limits",
        "functions.dal.limits",
        "functions.logic.callbacks",
        "functions.logic.in_flight",
    } <= loaded
    # And what only a job of a fan-out batch (or another function) uses was not
    assert loaded & CONSUMER_RARE_LOGIC == set()


SETTLE = """
import json, sys
from functions.handlers import consumer, runtime
from functions.logic.clock import iso
from functions.models.job import HistoryEntry, Job, JobStatus

settled = []
class Settler:
    def job_final(self, job):
        settled.append(job.id)

def job(job_id, batch_id):
    now = iso(0)
    history = (HistoryEntry(status=JobStatus.COMPLETED, at=now),)
    return Job(id=job_id, tenant="t", type="simulate", payload={}, status=JobStatus.COMPLETED, priority=5, attempts=1,
               max_attempts=3, created_at=now, updated_at=now, history=history, batch_id=batch_id)

runtime.settle_batch(job("alone", None))
loaded = "functions.logic.batches" in sys.modules
runtime.batch_settler = Settler
runtime.settle_batch(job("child", "b-1"))
print(json.dumps([loaded, settled]))
"""


def test_the_consumer_settles_batches_only_for_a_job_of_one() -> None:
    # Given the consumer imported in a fresh interpreter
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SETTLE], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    # When a job in no batch ends, then a batch's child
    loaded, settled = json.loads(out.stdout)
    # Then the first built no settler (the batches' modules stay unloaded), and the child's batch was settled
    assert loaded is False
    assert settled == ["child"]


def test_the_request_bodies_are_built_only_with_the_document() -> None:
    # Given the API imported in this process, its document not yet built by this test
    doc.request_bodies.cache_clear()
    # When the document is built
    spec = json.loads(doc.document(app, "/test-base"))
    # Then each operation declared with a request body has it, built from its model
    body = spec["paths"]["/jobs"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["discriminator"]["propertyName"] == "type"
    assert {"createJob", "createBatch", "enqueueMessage", "createUpload", "cancelJobs"} <= set(doc.request_bodies())


# The Powertools modules neither function uses: the other resolvers (AppSync's imports asyncio) and the data classes
# of other event sources, which the packages' __init__s would load (functions/handlers/lean_imports.py).
OTHER_RESOLVERS = {
    "aws_lambda_powertools.event_handler.appsync",
    "aws_lambda_powertools.event_handler.events_appsync.appsync_events",
    "aws_lambda_powertools.event_handler.bedrock_agent",
    "aws_lambda_powertools.event_handler.bedrock_agent_function",
    "aws_lambda_powertools.event_handler.lambda_function_url",
    "aws_lambda_powertools.event_handler.vpc_lattice",
    "aws_lambda_powertools.event_handler.http_resolver",
}
OTHER_EVENT_SOURCES = {
    f"aws_lambda_powertools.utilities.data_classes.{module}"
    for module in ("appsync_resolver_event", "code_pipeline_job_event", "kinesis_firehose_event", "ses_event")
}


def test_importing_the_api_loads_one_resolver_and_no_asyncio() -> None:
    # When the API's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.api", "")
    # Then Powertools' REST resolver and the API Gateway event were loaded, and no other resolver, no other event
    # source's data classes, and nothing of asyncio (which only AppSync's resolver imports)
    assert {
        "aws_lambda_powertools.event_handler.api_gateway",
        "aws_lambda_powertools.utilities.data_classes.api_gateway_proxy_event",
    } <= loaded
    assert loaded & (OTHER_RESOLVERS | OTHER_EVENT_SOURCES) == set()
    assert {name for name in loaded if name.startswith("asyncio.")} == set()


def test_importing_the_consumer_loads_no_other_event_source() -> None:
    # When the consumer's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.consumer", "aws_lambda_powertools.")
    # Then its batch processor and the SQS record were loaded, and neither a resolver nor other event sources
    assert {
        "aws_lambda_powertools.utilities.batch",
        "aws_lambda_powertools.utilities.data_classes.sqs_event",
    } <= loaded
    assert loaded & (OTHER_RESOLVERS | OTHER_EVENT_SOURCES) == set()
    assert not {name for name in loaded if name.startswith("aws_lambda_powertools.event_handler.")}


def test_importing_the_consumer_runs_no_asyncio() -> None:
    # When the consumer's handler module is imported in a fresh interpreter
    loaded = modules_loaded("functions.handlers.consumer", "asyncio")
    # Then Powertools' batch module imported asyncio (for its asynchronous processor, which the consumer does not
    # use), and none of asyncio's modules was loaded: its __init__ did not run
    assert loaded == {"asyncio"}


DEFERRED = """
import json, sys
import functions.handlers  # sets the packages up
from functions.handlers.lean_imports import DEFERRED_PACKAGES, DeferredPackage

result = {}
for name in DEFERRED_PACKAGES[:2]:
    package = sys.modules[name]
    deferred = type(package) is DeferredPackage
    lazily = {export: getattr(package, export) for export in package._exports}
    still_deferred = type(package) is DeferredPackage
    everything = package.__all__  # not a name any module binds: runs the __init__
    same = sorted(export for export in everything if export in lazily and getattr(package, export) is lazily[export])
    result[name] = [deferred, still_deferred, type(package).__name__, sorted(everything), same]
print(json.dumps(result))
"""


def test_a_deferred_package_gives_what_its_init_gives() -> None:
    # Given a fresh interpreter that imported the handlers' package
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", DEFERRED], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    for name, (deferred, still_deferred, kind, everything, same) in json.loads(out.stdout).items():
        # Then each package was set up deferred, and every name its __init__ binds was given one module at a time
        assert deferred, name
        assert still_deferred, name
        # And once its __init__ ran (asked for a name no module binds), it is a plain package again, and every
        # public name is the very object given before
        assert kind == "module"
        assert len(everything) > 15
        assert same == everything, name


DEFERRED_ASYNCIO = """
import json, sys, threading, time
import functions.handlers  # sets asyncio up
package = sys.modules["asyncio"]
deferred = type(package).__name__

# While one thread runs the __init__ (slowly), another asks for a name it binds: it waits, and gets it.
loader = package.__spec__.loader
real_exec = loader.exec_module
running = threading.Event()
def slow_exec(module):
    running.set()
    time.sleep(0.2)
    real_exec(module)
loader.exec_module = slow_exec
first = threading.Thread(target=lambda: package.get_event_loop_policy)
first.start()
running.wait()
import asyncio
sleep = asyncio.sleep  # asked for while the __init__ runs in the other thread
first.join()

async def answer():
    await sleep(0)
    return 42

print(json.dumps([deferred, type(package).__name__, asyncio.run(answer()), sleep is asyncio.tasks.sleep]))
"""


def test_a_deferred_asyncio_runs_its_init_on_first_use_once_for_every_thread() -> None:
    # Given a fresh interpreter that imported the handlers' package (asyncio deferred)
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", DEFERRED_ASYNCIO], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    deferred, kind, answer, same = json.loads(out.stdout)
    # Then asyncio was deferred until a name was asked for; a thread asking while another ran its __init__ waited
    # for it and got the name; and asyncio then works as usual
    assert deferred == "DeferredPackage"
    assert kind == "module"
    assert (answer, same) == (42, True)
