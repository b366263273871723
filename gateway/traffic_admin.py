"""The admin routes of the traffic policies (gateway/traffic.py), added to the admin port by gateway/rest.py:

- `GET /v1/traffic` → `{"region", "models": {model: policy}}`, every routed model (the default policy, generation
  0, for one never set)
- `GET /v1/traffic/{model}` → the policy
- `PUT /v1/traffic/{model}` with a policy (+ optional `"expect_generation": N`) → the stored policy
- `DELETE /v1/traffic/{model}[?expect_generation=N]` → back to the default policy (its generation still counts up)

400 names what to fix (an unknown model or version, weights that do not sum to 100, a bad percent); 409 when
`expect_generation` is not the current generation. A change is written to the state dir before it is answered.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import ValidationError

from edgeinfer.gateway.dataplane import GatewayDataPlane
from edgeinfer.gateway.traffic import TrafficTable, TrafficUpdate, describe_validation, policies_json
from edgeinfer.protocol.errors import InferenceError, InvalidArgument, ModelNotFound, Unavailable

EXAMPLE = '{"weights": {"1": 90, "2": 10}, "shadow": {"version": "2", "percent": 5}, "revert_to": "1"}'


class TrafficRoutes:
    def __init__(self, dataplane: GatewayDataPlane, region: str) -> None:
        self._dp = dataplane
        self._region = region

    @property
    def _table(self) -> TrafficTable:
        return self._dp.traffic

    def _routed(self, model: str) -> None:
        routed = self._dp.backend.models()
        if model not in routed:
            raise InvalidArgument(f"unknown model '{model}'; this gateway routes: {', '.join(routed) or '(none)'}")

    async def _versions(self, model: str) -> tuple[str, ...]:
        """The versions the model's functions report (the data plane's view of them)."""
        try:
            view = await self._dp.model(model)
        except ModelNotFound as exc:
            raise InvalidArgument(f"unknown model '{model}': {exc.message}") from None
        except InferenceError as exc:
            raise Unavailable(
                f"cannot check the traffic policy against the versions of model '{model}': {exc.message}; "
                "try again once its functions answer"
            ) from None
        return view.versions

    async def _save(self) -> None:
        try:
            await self._table.save()
        except OSError as exc:
            raise InferenceError(
                f"the traffic policy is applied but could not be written to {self._table.path}: {exc}; a restart "
                "would lose it: fix the state dir and PUT it again"
            ) from None

    async def list(self, request: web.Request) -> web.Response:
        models = policies_json(self._table, self._dp.backend.models())
        return web.json_response({"region": self._region, "models": models})

    async def get(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        self._routed(model)
        return web.json_response(self._table.get(model).model_dump(mode="json"))

    async def put(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        self._routed(model)
        body = await request.read()
        if not body.strip():
            raise InvalidArgument(f"PUT /v1/traffic/{model} needs a JSON policy, e.g. {EXAMPLE}")
        try:
            update = TrafficUpdate.model_validate_json(body)
        except ValidationError as exc:
            if any(e["type"] == "json_invalid" or not e["loc"] for e in exc.errors()):
                raise InvalidArgument(f"body is not a JSON object: give a policy, e.g. {EXAMPLE}") from None
            raise InvalidArgument(describe_validation(exc, model)) from None
        current_tags = self._table.get(model).tags
        if update.tags != current_tags:
            # Tags first: on Knative a candidate's version is known only through its tag's route.
            try:
                self._dp.apply_tags(model, update.tags)
            except ValueError as exc:
                raise InvalidArgument(f"traffic policy of model '{model}': tags: {exc}") from None
        try:
            versions = await self._versions(model)
        except InferenceError:
            self._dp.apply_tags(model, current_tags)
            raise
        # No await between the generation check and the change: another PUT cannot slip in between.
        try:
            policy = self._table.put(model, update, versions)
        except InferenceError:
            if update.tags != current_tags:
                self._dp.apply_tags(model, current_tags)
            raise
        await self._save()
        return web.json_response(policy.model_dump(mode="json"))

    async def delete(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        self._routed(model)
        text = request.query.get("expect_generation")
        expected = None
        if text is not None:
            if not text.isdigit():
                raise InvalidArgument(f"expect_generation must be a generation number (0 or more), not {text!r}")
            expected = int(text)
        policy = self._table.clear(model, expected)
        await self._save()
        return web.json_response(policy.model_dump(mode="json"))


def add_traffic_routes(app: web.Application, dataplane: GatewayDataPlane, region: str) -> None:
    routes = TrafficRoutes(dataplane, region)
    app.router.add_get("/v1/traffic", routes.list)
    app.router.add_get("/v1/traffic/{model}", routes.get)
    app.router.add_put("/v1/traffic/{model}", routes.put)
    app.router.add_delete("/v1/traffic/{model}", routes.delete)
