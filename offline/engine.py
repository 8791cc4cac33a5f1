"""Evaluate the Pulumi program for one stack with Pulumi's in-process mock engine.

Nothing here talks to AWS, Datadog or the Pulumi service: `pulumi.runtime.set_mocks`
replaces the engine, and `OfflineMocks` answers the provider calls the program makes
(AMI lookup, default VPC, ...) with fixed, clearly fake values. Every registered
resource is recorded with its raw inputs and resource options, which is what the
tests and the offline plan inspect. It is a rendering of the program, not a preview
of a real account.
"""

from __future__ import annotations

import asyncio
import logging
import runpy
import sys
import threading
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import resource as pulumi_resource
from pulumi.runtime import rpc as pulumi_rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.sync_await import _sync_await

from offline.stack_config import (  # re-exported: the tests and the plan read them here too
    PLACEHOLDER_SECRETS, PROJECT, ROOT, config_key, load_stack_config, stack_config, stack_settings,
)

# How Pulumi's wire format marks a secret value among a resource's inputs.
SECRET_SIG = pulumi_rpc._special_sig_key
SECRET_VALUE_SIG = pulumi_rpc._special_secret_sig

FAKE_ACCOUNT = "123456789012"
# Who "runs" the offline program: an assumed-role session of a deploy role.
FAKE_DEPLOYER = f"arn:aws:iam::{FAKE_ACCOUNT}:role/observability-lab-deploy"
FAKE_VPC = "vpc-0d1e2f3a4b5c6d7e8"
FAKE_SUBNETS = ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
# The availability zone (after the region's name) of each fake subnet: the default VPC's two,
# and one more in a third zone for tests that move a host; any other subnet id is in zone a.
FAKE_SUBNET_ZONES = {FAKE_SUBNETS[0]: "a", FAKE_SUBNETS[1]: "b", "subnet-0ccccccccccccccc3": "c"}
# What a time:Static records when created: "now" on a real `pulumi up`, a fixed
# Wednesday afternoon here, so every evaluation renders the same downtime starts.
FAKE_NOW = datetime(2030, 1, 2, 15, 37, 42, tzinfo=timezone.utc)


# Per registration the SDK walks the Python stack (traceback.extract_stack) for the source
# position a real engine shows in its diagnostics; the mock engine shows none and nothing
# here records it, so it is skipped: ~15 % of an evaluation's CPU.
pulumi_resource._get_stack_trace = source_pb2.StackTrace

# The SDK logs ~5 debug messages per registration (pulumi.log.debug), which the mock engine hands to
# its logger (the root logger's debug): dropped unless that logger is enabled for debug, so they are
# only built when it is. ~3 % of an evaluation's CPU.
_sdk_debug = pulumi.log.debug


def _debug(msg: str, resource: Optional[pulumi.Resource] = None, stream_id: Optional[int] = None,
           ephemeral: Optional[bool] = None) -> None:
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        _sdk_debug(msg, resource, stream_id, ephemeral)


pulumi.log.debug = _debug


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    options: dict[str, Any]
    outputs: dict[str, Any]
    id: str = ""  # the id the engine gave it (the mocks', for the offline engine)
    # URNs this resource waits for: its inputs' resources and its depends_on.
    dependencies: tuple[str, ...] = ()
    # Per input, the URNs of the resources whose outputs it holds (what a replacement reaches).
    input_dependencies: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class Evaluation:
    stack: str
    resources: list[Resource] = field(default_factory=list)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    error: Optional[BaseException] = None

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str) -> Resource:
        found = self.of_type(type_)
        assert len(found) == 1, f"expected one {type_}, found {[r.name for r in found]}"
        return found[0]

    def children_of(self, parent: Resource) -> list[Resource]:
        return [r for r in self.resources if r.parent == parent.urn]


def is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_VALUE_SIG


def reveal(value: Any) -> Any:
    """The value with every secret marker removed (for asserting on content)."""
    if is_secret(value):
        return reveal(value["value"])
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value



def _ami(lookup: dict[str, Any]) -> dict[str, Any]:
    """An image per name filter: another release or build is another (fake) AMI id."""
    names = [value for f in lookup.get("filters", []) if f["name"] == "name" for value in f["values"]]
    name = names[0] if names else "unnamed"
    ami = f"ami-{fake_id(name)}"
    return {"id": ami, "imageId": ami, "name": name}


def fake_id(name: str) -> str:
    return f"{zlib.crc32(name.encode()):08x}{zlib.crc32(name[::-1].encode()):08x}"[:17]


class OfflineMocks(pulumi.runtime.Mocks):
    """Answers resource registrations and provider calls with deterministic fake values."""

    def __init__(self, evaluation: Evaluation, region: str):
        self.evaluation = evaluation
        self.region = region

    def zone(self, subnet_id: Any) -> str:
        return self.region + FAKE_SUBNET_ZONES.get(subnet_id, "a")

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.evaluation.invokes.append((args.token, dict(args.args)))
        answers = {
            "aws:ec2/getAmi:getAmi": _ami(args.args),
            "aws:ec2/getVpc:getVpc": {"id": FAKE_VPC, "cidrBlock": "172.31.0.0/16"},
            "aws:ec2/getSubnets:getSubnets": {"id": FAKE_VPC, "ids": FAKE_SUBNETS},
            "aws:ec2/getSubnet:getSubnet": {"id": args.args.get("id"), "vpcId": FAKE_VPC,
                                            "availabilityZone": self.zone(args.args.get("id"))},
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": FAKE_ACCOUNT, "userId": "AROAEXAMPLEDEPLOYER:offline",
                "arn": f"arn:aws:sts::{FAKE_ACCOUNT}:assumed-role/observability-lab-deploy/offline"},
            "aws:iam/getSessionContext:getSessionContext": {
                "arn": args.args.get("arn"), "issuerArn": FAKE_DEPLOYER, "issuerName": "observability-lab-deploy",
                "sessionName": "offline"},
            "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com"},
        }
        if args.token not in answers:
            raise NotImplementedError(f"offline engine has no answer for invoke {args.token}")
        return answers[args.token], []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        name, type_ = args.name, args.typ
        state = dict(args.inputs)
        resource_id = f"{name}-id"
        if type_ == "aws:ec2/instance:Instance":
            resource_id = f"i-{fake_id(name)}"
            # One address for all (a documentation range); a DNS name of its own per instance.
            state.update(publicIp="203.0.113.10", privateIp="172.31.0.10",
                         publicDns=f"ec2-{fake_id(name)}.compute-1.amazonaws.example")
        elif type_ == "aws:ec2/securityGroup:SecurityGroup":
            resource_id = f"sg-{fake_id(name)}"
        elif type_ == "aws:ebs/volume:Volume":
            resource_id = f"vol-{fake_id(name)}"
            state["arn"] = f"arn:aws:ec2:{self.region}:{FAKE_ACCOUNT}:volume/{resource_id}"
        elif type_ == "aws:dlm/lifecyclePolicy:LifecyclePolicy":
            resource_id = f"policy-{fake_id(name)}"
            state["arn"] = f"arn:aws:dlm:{self.region}:{FAKE_ACCOUNT}:policy/{resource_id}"
        elif type_ == "aws:ssm/parameter:Parameter":
            param = reveal(args.inputs.get("name", name))
            state["arn"] = f"arn:aws:ssm:{self.region}:{FAKE_ACCOUNT}:parameter{param}"
        elif type_ == "aws:ssm/document:Document":
            # A new document's only version (its content never changes under one name).
            state.update(latestVersion="1", defaultVersion="1")
        elif type_ == "aws:ssm/association:Association":
            state["associationId"] = f"{fake_id(name)}-{fake_id(name[::-1])}"
        elif type_ == "aws:kms/key:Key":
            resource_id = f"{fake_id(name)}-0000-4000-8000-{fake_id(name[::-1])[:12]}"
            state.update(keyId=resource_id, arn=f"arn:aws:kms:{self.region}:{FAKE_ACCOUNT}:key/{resource_id}")
        elif type_ == "aws:kms/alias:Alias":
            state["arn"] = f"arn:aws:kms:{self.region}:{FAKE_ACCOUNT}:{reveal(args.inputs.get('name', name))}"
        elif type_.startswith("aws:iam/"):
            state.setdefault("name", name)
            if type_ == "aws:iam/role:Role":  # as in AWS: a role's id is its name
                resource_id = reveal(state["name"])
            state["arn"] = f"arn:aws:iam::{FAKE_ACCOUNT}:{type_.split(':')[-1].lower()}/{reveal(state['name'])}"
        elif type_ == "time:index/static:Static":
            given = args.inputs.get("rfc3339")
            instant = datetime.fromisoformat(given).astimezone(timezone.utc) if given else FAKE_NOW
            state.update(rfc3339=instant.strftime("%Y-%m-%dT%H:%M:%SZ"), unix=int(instant.timestamp()),
                         year=instant.year, month=instant.month, day=instant.day,
                         hour=instant.hour, minute=instant.minute, second=instant.second)
        elif type_.startswith("datadog:"):
            # Datadog ids are numeric (monitor ids feed downtime schedules as ints).
            resource_id = str(100000 + zlib.crc32(name.encode()) % 900000)
        return resource_id, state


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The real MockMonitor, also keeping each registration's parent and options.

    With `prior` (the evaluation of an earlier `pulumi up`, standing for the stack's state),
    an input the resource ignores (`ignore_changes`) keeps its prior value, as the engine
    keeps the one in its state: what the program asks for then differs from what it gets.
    """

    def __init__(self, mocks: OfflineMocks, prior: Optional[Evaluation] = None):
        super().__init__(mocks)
        self.requests: dict[str, Any] = {}
        # Per URN, the inputs as MockMonitor deserialized them for the mocks (_collect's record).
        self.inputs: dict[str, dict[str, Any]] = {}
        self.prior = {(r.type, r.name): r for r in prior.resources} if prior else {}
        self._registering = threading.local()  # registrations run on executor threads
        answer = mocks.new_resource

        def new_resource(args: pulumi.runtime.MockResourceArgs):
            self._registering.inputs = args.inputs
            return answer(args)

        mocks.new_resource = new_resource  # type: ignore[method-assign]

    def _keep_ignored_inputs(self, request) -> None:
        before = self.prior.get((request.type, request.name))
        if before is None:
            return
        for key in request.ignoreChanges:
            if key in before.inputs:
                request.object.update({key: before.inputs[key]})

    def RegisterResource(self, request):
        self._keep_ignored_inputs(request)
        self._registering.inputs = None
        response = super().RegisterResource(request)
        _keep_thread_loop()
        self.requests[response.urn] = request
        if self._registering.inputs is not None:
            self.inputs[response.urn] = self._registering.inputs
        return response

    def Invoke(self, request):
        response = super().Invoke(request)
        _keep_thread_loop()
        return response


# The mock monitor runs on executor threads and makes an event loop in each, never
# closed. Dropped with their thread, such loops print spurious 'Invalid file
# descriptor' tracebacks from __del__; kept here, close_event_loop() closes them.
_WORKER_LOOPS: set[asyncio.AbstractEventLoop] = set()


def _keep_thread_loop() -> None:
    if threading.current_thread() is threading.main_thread():
        return
    try:
        _WORKER_LOOPS.add(asyncio.get_event_loop_policy().get_event_loop())
    except RuntimeError:  # this call made none (e.g. the root Stack's registration)
        pass


def configure(stack: str, overrides: Optional[Mapping[str, Any]] = None,
              stack_file: Optional[Path] = None,
              prior: Optional[Evaluation] = None) -> tuple[Evaluation, RecordingMonitor]:
    """Install fresh mocks and the stack's config (Pulumi.<stack>.yaml plus `overrides`).

    An override of None removes the key, so the program's default applies.
    """
    config, secret_keys = stack_config(stack, overrides, stack_file)
    _open_event_loop()
    evaluation = Evaluation(stack=stack)
    mocks = OfflineMocks(evaluation, region=config.get("aws:region", "us-east-1"))
    monitor = RecordingMonitor(mocks, prior)
    pulumi_settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config(config, secret_keys)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return evaluation, monitor


def evaluate(stack: str, overrides: Optional[Mapping[str, Any]] = None,
             stack_file: Optional[Path] = None,
             program: Optional[Callable[[], None]] = None,
             prior: Optional[Evaluation] = None) -> Evaluation:
    """Run __main__.py (or `program`: a few resources a test registers) for `stack` under
    the mock engine and record what it registers (`prior`: the stack's state, see RecordingMonitor).

    Never raises for program errors: they are returned in `Evaluation.error`, with
    whatever was registered before the error (for "nothing was created" checks).
    """
    evaluation, monitor = configure(stack, overrides, stack_file, prior)

    def main_program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"), run_name="__main__")

    try:
        _sync_await(run_pulumi_func(program or main_program))
    except Exception as error:  # noqa: BLE001 handed to the caller
        evaluation.error = _root_cause(error)
    _collect(evaluation, monitor)
    if evaluation.error is not None:
        _forget_failed_run()
    return evaluation


def _forget_failed_run() -> None:
    """What a failed run leaves in the runtime's process-wide settings (its unhandled error,
    RPCs and outputs still pending), which the next evaluation would otherwise report as its own."""
    state: Any = pulumi_settings.SETTINGS  # its attributes are context variables pyright cannot follow
    for pending in [*state.outputs, *state.rpc_manager.rpcs]:
        if isinstance(pending, asyncio.Future):
            pending.cancel()
    state.outputs.clear()
    state.rpc_manager.clear()


def _open_event_loop() -> None:
    """A fresh loop for Pulumi's runtime when none is open (e.g. after close_event_loop)."""
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        loop = None
    if loop is None or loop.is_closed():
        asyncio.set_event_loop(asyncio.new_event_loop())


def close_event_loop() -> None:
    """Close the loop Pulumi's runtime ran on, so interpreter exit does not trip over it.

    Left open, its self-pipe can be closed first at shutdown and the loop's __del__
    then prints a spurious 'Invalid file descriptor' traceback.
    """
    loop = asyncio.get_event_loop_policy().get_event_loop()
    if not loop.is_running():
        loop.close()  # also joins its executor's threads, so their loops are idle now
        asyncio.set_event_loop(None)
    while _WORKER_LOOPS:
        _WORKER_LOOPS.pop().close()


def _alias_urns(monitor: RecordingMonitor, request: Any) -> list[str]:
    """The resource's aliases as URNs (what the engine matches its state against).

    An alias given as a spec (`pulumi.Alias(type_=...)`) is completed from the resource
    itself, as the engine does: an unset name, type or parent is the resource's own.
    """
    urns = list(request.aliasURNs)
    for alias in request.aliases:
        if alias.HasField("spec"):
            spec = alias.spec
            if spec.stack or spec.project:
                raise NotImplementedError("offline engine: aliases to another stack or project")
            parent = "" if spec.noParent else (spec.parentUrn or request.parent)
            urns.append(monitor.make_urn(parent, spec.type or request.type, spec.name or request.name))
        else:
            urns.append(alias.urn)
    return sorted(urns)


def _collect(evaluation: Evaluation, monitor: RecordingMonitor) -> None:
    for urn, registration in monitor.resources.items():
        request = monitor.requests.get(urn)
        if request is None:  # read-only lookups (ReadResource) carry no request
            continue
        inputs = monitor.inputs[urn] if urn in monitor.inputs else pulumi_rpc.deserialize_properties(request.object)
        evaluation.resources.append(Resource(
            type=request.type, name=request.name, urn=urn, parent=request.parent,
            custom=request.custom, inputs=dict(inputs),
            options={
                "ignoreChanges": sorted(request.ignoreChanges),
                "replaceOnChanges": sorted(request.replaceOnChanges),
                "additionalSecretOutputs": sorted(request.additionalSecretOutputs),
                "deleteBeforeReplace": request.deleteBeforeReplace,
                "protect": request.protect,
                "retainOnDelete": request.retainOnDelete,
                "aliases": _alias_urns(monitor, request),
            },
            outputs=dict(registration.state), id=str(registration.id or ""),
            dependencies=tuple(sorted(request.dependencies)),
            input_dependencies={key: tuple(sorted(deps.urns))
                                for key, deps in sorted(request.propertyDependencies.items()) if deps.urns},
        ))
    root = pulumi_settings.get_root_resource()
    for key, output in (getattr(root, "outputs", None) or {}).items():
        out = pulumi.Output.from_input(output)
        try:
            evaluation.outputs[key] = _sync_await(out.future())
        except Exception as error:  # noqa: BLE001 a resource the output needs failed to register
            # The program's own error, not the wrappers the runtime adds around it.
            evaluation.error = evaluation.error or _root_cause(error)
            continue
        if _sync_await(out.is_secret()):
            evaluation.secret_outputs.add(key)


def _root_cause(error: BaseException) -> BaseException:
    """The program's own error, inside the runtime's "While processing ..." wrappers."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error
