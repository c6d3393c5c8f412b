"""The review → retrain loop, measured end to end: how fast the model learns a province it never saw.

A held-out source of the merged data plays the new province: its photos of the classes another source has too
(ricepest-extra's brown planthopper, green leafhopper, leaf folder, stem borers, weevils and whorl maggot, which
ricepest6 also has). The default model is trained without them, registered and promoted to @champion in a local
MLflow registry (SQLite), and the service is started on ``models:/pestid@champion`` (``create_app``, in process,
reached over HTTP through a test client). Then:

1. every original of the province is sent to ``POST /v1/identify`` (one photo each), as farmers send them;
2. an officer confirms or corrects 10, 25 and 50 % of them (stratified by class; each share holds the one
   before) through the review API: "confirm" where the farmer was told the right species, else "relabel";
3. ``pestid retrain`` builds a dataset version from the approved reviews on the base's frozen test split,
   trains, and gates the challenger against @champion on that split (the old sources), promoting it if it passes;
4. the running service reloads the alias (``POST /v1/admin/reload``);
5. the served model scores the province's originals that are never confirmed (the same half of the province at
   every point) and the old sources' test split.

Every figure is per original (each group of near-duplicate files counted once) with its 95 % bootstrap interval
over originals: top-1, the share of useful answers (identified at the species or group level by
``pestid.decision.decide``), the precision of those answers, and macro-F1 on the province; macro-F1 on the old
test split (the gate's job is that it does not fall). Each is also a ratio against the 0 % row (the champion
trained without the province) measured in the same run.

    bash scripts/merge_shared.sh
    .venv/bin/python benchmarks/learning_curve.py --work runs/learning-curve

About an hour on 2 cores: the base model and three retrains of training/configs/default.yaml (10-15 minutes
each with the gate's two evaluations), about a minute to send the province, a minute to score each point.
Resumable: run the same command again and it goes on from the last finished step (``--work`` holds the registry,
the service's database and photos, and ``state.json``), or with more ``--shares`` to add points; the table is
printed after each point. Where the gate refuses a challenger, the service keeps its champion and the table shows
both: the served model's row, and beneath it what the refused challenger would have answered. Needs
../shared/datasets and data/manifests/merged.csv; ``--set key=value`` passes training overrides (e.g.
``--set export.int8=false`` for a quicker run; the gate's tolerances are config keys too).
"""

from __future__ import annotations

import argparse
import json
import logging
import mimetypes
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from pestid.manifest import Manifest, Row, read_manifest, write_manifest

NAME = "pestid"
PASSWORD = "một câu dài cho cán bộ thử"
MEASURES = ("top1", "useful", "precision", "macro_f1")
HALF = 0.5  # of each class's originals may be confirmed; the other half is scored at every point


def province_of(manifest: Manifest, held_out: str) -> tuple[Manifest, list[Row]]:
    """The base dataset (every other row) and the province: ``held_out``'s rows of classes another source has."""
    shared = {r.label for r in manifest.rows if r.source == held_out} & {
        r.label for r in manifest.rows if r.source != held_out
    }
    if not shared:
        raise SystemExit(f"{held_out} shares no class with another source of the manifest: nothing to measure")
    inside = [r.source == held_out and r.label in shared for r in manifest.rows]
    province = [r for r, mine in zip(manifest.rows, inside, strict=True) if mine]
    return manifest.with_rows(r for r, mine in zip(manifest.rows, inside, strict=True) if not mine), province


def originals_of(rows: list[Row]) -> dict[str, list[Row]]:
    """The province's originals: each group's files, in path order (the first is the one a farmer sends)."""
    found: dict[str, list[Row]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r.path):
        found[row.group or row.path].append(row)
    return dict(found)


def confirmation_order(originals: dict[str, list[Row]], seed: int) -> dict[str, list[str]]:
    """Each class's originals in the (seeded) order officers confirm them: a share is a prefix of its class's list."""
    by_class: dict[str, list[str]] = defaultdict(list)
    for group, files in sorted(originals.items()):
        by_class[files[0].label].append(group)
    rng = random.Random(seed)
    for label in sorted(by_class):
        rng.shuffle(by_class[label])
    return dict(by_class)


def confirmed(order: dict[str, list[str]], share: float) -> list[str]:
    return [g for label in sorted(order) for g in order[label][: round(share * len(order[label]))]]


def never_confirmed(order: dict[str, list[str]]) -> list[str]:
    return [g for label in sorted(order) for g in order[label][round(HALF * len(order[label])) :]]


def figures(predictor: Any, manifest: Manifest, rows: list[Row]) -> dict[str, Any]:
    """``rows`` answered by ``predictor`` as the service answers: per original, each measure with its interval."""
    from pestid.training.evaluate import predict_rows
    from pestid.training.metrics import answer_levels, bootstrap_interval, group_weights, macro_f1

    found, bad = predict_rows(predictor, [manifest.image_path(r) for r in rows])
    # probabilities, and the open-set score for a model that has one (then decide's rule uses it too)
    probs, novelty = getattr(found, "probabilities", found), getattr(found, "novelty", None)
    rows = [r for k, r in enumerate(rows) if k not in set(bad)]
    names, contract = list(predictor.labels), predictor.contract
    labels = np.array([names.index(r.label) for r in rows])
    groups = [r.group or r.path for r in rows]
    open_set = {} if novelty is None else {"novelty": novelty, "novelty_threshold": contract.novelty_threshold}
    levels, right = answer_levels(probs, labels, names, threshold=contract.threshold,
                                  class_thresholds=contract.class_thresholds,
                                  group_thresholds=contract.group_thresholds, **open_set)  # fmt: skip
    predicted, answered, every = probs.argmax(axis=1), levels > 0, np.ones(len(rows), dtype=bool)

    def share(hit: np.ndarray, of: np.ndarray) -> Any:
        return lambda w: float((w * (hit & of)).sum() / (w * of).sum()) if (w * of).sum() > 0 else float("nan")

    measures = {"top1": share(predicted == labels, every), "useful": share(answered, every),
                "precision": share(right, answered), "macro_f1": lambda w: macro_f1(labels, predicted, len(names), w)}  # fmt: skip
    weights = group_weights(groups)
    return {"originals": len(set(groups)), "unreadable": len(bad),
            **{k: {"value": f(weights), "ci": bootstrap_interval(f, groups)} for k, f in measures.items()}}  # fmt: skip


class Service:
    """The service in process, reached over HTTP as farmers and officers reach it."""

    def __init__(self, work: Path, tracking_uri: str) -> None:
        from fastapi.testclient import TestClient

        from pestid.serving.app import create_app
        from pestid.serving.settings import Settings

        self.settings = Settings(model=f"models:/{NAME}@champion", mlflow_tracking_uri=tracking_uri,
                                 data_dir=work / "serving", log_json=False, model_refresh_s=0,
                                 upload_rate_per_address="1000000/minute", upload_rate_per_device="1000000/minute")  # fmt: skip
        self.client = TestClient(create_app(self.settings))
        self.client.__enter__()
        logging.getLogger("pestid.serving").setLevel(logging.WARNING)  # not one line per request
        self.officer, self.admin = self._sign_in("can-bo-lan", "officer"), self._sign_in("quan-tri", "admin")

    def _sign_in(self, username: str, role: str) -> dict[str, str]:
        from pestid.serving.accounts import AccountError, add_user

        try:
            with self.client.app.state.sessions() as session, session.begin():  # type: ignore[attr-defined]
                add_user(session, username, PASSWORD, role)
        except AccountError:  # made by an earlier run of the same --work
            pass
        answer = self.client.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
        return {"Authorization": f"Bearer {answer.json()['token']}"}

    @property
    def model(self) -> Any:
        return self.client.app.state.model  # type: ignore[attr-defined]

    def identify(self, path: Path) -> dict[str, Any]:
        kind = mimetypes.guess_type(path.name)[0] or "image/jpeg"
        answer = self.client.post("/v1/identify", files=[("photos", (path.name, path.read_bytes(), kind))])
        if answer.status_code not in (200, 201):  # 201: stored for review
            raise RuntimeError(f"POST /v1/identify {path}: {answer.status_code} {answer.text[:300]}")
        body = answer.json()
        return {"id": body["submission_id"], "decision": body["decision"], "level": body["level"],
                "answer": (body.get("species") or {}).get("id")}  # fmt: skip

    def review(self, submission: dict[str, Any], truth: str) -> str:
        """The officer's verdict: confirm what the farmer was told where it was the right species, else relabel."""
        told_right = submission["level"] == "species" and submission["answer"] == truth
        for body in ([{"action": "confirm"}] if told_right else []) + [{"action": "relabel", "label": truth}]:
            answer = self.client.post(f"/v1/review/{submission['id']}", json=body, headers=self.officer)
            if answer.status_code == 200 and answer.json()["status"] == "approved":
                return str(body["action"])
        raise RuntimeError(f"review of {submission['id']}: {answer.status_code} {answer.text[:300]}")

    def reload(self) -> str:
        return str(self.client.post("/v1/admin/reload", headers=self.admin).json()["model_version"])

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def pestid(*args: str) -> int:
    """A ``pestid`` command as a data scientist runs it (its own process; its progress shows)."""
    print(f"$ pestid {' '.join(args)}", flush=True)
    return subprocess.run([sys.executable, "-m", "pestid.cli", *args], check=False).returncode


def gate_of(tracking_uri: str, before: str | None) -> dict[str, Any]:
    """The gate's decision on the challenger ``pestid retrain`` registered (a new version since ``before``)."""
    import mlflow

    from pestid import registry

    challenger = registry.version_by_alias(tracking_uri, NAME, registry.CHALLENGER)
    if challenger is None or challenger.version == before or "gate" not in challenger.tags:
        raise RuntimeError("pestid retrain registered no gated challenger: see its output above")
    decision = json.loads(Path(mlflow.artifacts.download_artifacts(
        run_id=challenger.run_id, artifact_path="gate/decision.json", tracking_uri=tracking_uri)).read_text())  # fmt: skip
    return {"version": f"{NAME}/{challenger.version}", "gate": challenger.tags["gate"], "reasons": decision["reasons"]}


class Curve:
    """One run of the loop, its steps recorded in ``WORK/state.json`` so that a second run goes on from there."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.work = args, Path(args.work).resolve()
        (self.work / "data").mkdir(parents=True, exist_ok=True)
        self.state_path = self.work / "state.json"
        self.state: dict[str, Any] = (json.loads(self.state_path.read_text()) if self.state_path.is_file()
                                      else {"submissions": {}, "approved": [], "points": {}})  # fmt: skip
        self.uri = f"sqlite:///{self.work / 'mlflow.db'}"
        self.flags = [f"mlflow.tracking_uri={self.uri}", f"mlflow.artifact_location={self.work / 'mlartifacts'}",
                      "mlflow.experiment=learning-curve", f"mlflow.registered_model={NAME}", *args.set]  # fmt: skip
        manifest = read_manifest(args.manifest)
        base, province = province_of(manifest, args.held_out)
        self.base_csv = write_manifest(base, self.work / "data" / "base.csv")
        self.base, self.manifest = read_manifest(self.base_csv), manifest
        self.originals = originals_of(province)
        self.order = confirmation_order(self.originals, args.seed)
        self.scored = [r for g in never_confirmed(self.order) for r in self.originals[g]]
        setup = {"manifest": manifest.version, "held_out": args.held_out, "seed": args.seed}
        if self.state.setdefault("setup", setup) != setup:
            raise SystemExit(f"{self.work} holds a run of {self.state['setup']}, not {setup}: choose another --work")
        print(f"province: {args.held_out}, {len(self.originals)} originals of {', '.join(sorted(self.order))}; "
              f"{len(set(r.group for r in self.scored))} never confirmed are scored; base: {len(base.rows)} photos",
              flush=True)  # fmt: skip

    def save(self) -> None:
        partial = self.state_path.with_suffix(".tmp")
        partial.write_text(json.dumps(self.state, indent=1, ensure_ascii=False))
        os.replace(partial, self.state_path)

    def train_base(self) -> None:
        if "base" in self.state:
            return
        config, base = str(self.args.config), str(self.base_csv)
        if pestid("train", "--config", config, "--data", base, "--out", str(self.work / "runs" / "base"), *self.flags):
            raise SystemExit("pestid train failed: see above")
        if pestid("promote", "--data", base, "--config", config, *self.flags):
            raise SystemExit("the first model was not promoted: see above")
        self.state["base"] = {"trained": time.time()}
        self.save()

    def submit(self, service: Service) -> None:
        from tqdm import tqdm

        sent = self.state["submissions"]
        for k, (group, files) in enumerate(tqdm(sorted(self.originals.items()), desc="POST /v1/identify")):
            if group not in sent:
                sent[group] = service.identify(self.manifest.image_path(files[0]))
                if k % 50 == 0:
                    self.save()
        self.save()

    def point(self, service: Service, share: int) -> dict[str, Any]:
        from pestid import registry

        started, row = time.monotonic(), {"share": share, "gate": "—", "reasons": [], "verdicts": {}}
        chosen = confirmed(self.order, share / 100)
        if share:
            approved = set(self.state["approved"])
            todo = [g for g in chosen if g not in approved]
            print(f"[{share} %] the officer confirms or corrects {len(todo)} more originals ({len(chosen)} in all)")
            for group in todo:
                action = service.review(self.state["submissions"][group], self.originals[group][0].label)
                row["verdicts"][action] = row["verdicts"].get(action, 0) + 1
                self.state["approved"].append(group)
            self.save()
            last = registry.version_by_alias(self.uri, NAME, registry.CHALLENGER)
            before = None if last is None else last.version
            out = self.work / "data" / f"share-{share}.csv"
            pestid("retrain", "--config", str(self.args.config), "--out", str(out), "--base", str(self.base_csv),
                   "--db", service.settings.resolved_database_url, "--photos", str(service.settings.photo_dir),
                   f"out={self.work / 'runs' / f'share-{share}'}", *self.flags)  # fmt: skip
            row.update(gate_of(self.uri, before))
            print(f"[{share} %] gate {row['gate']}; the service reloads @champion: {service.reload()}", flush=True)
        row.update(confirmed=len(chosen), served=service.model.version)
        print(f"[{share} %] scoring {row['served']} on the province's unconfirmed originals and the old test split")
        row["province"] = figures(service.model.predictor, self.manifest, self.scored)
        row["old_test"] = figures(service.model.predictor, self.base, self.base.split("test"))
        if row["gate"] == "refused":  # what it learnt all the same, beside what farmers are served
            from pestid.predictor import Predictor

            registry.client(self.uri)
            refused = Predictor(registry.download_onnx(NAME, row["version"].split("/")[-1]))
            row["refused"] = {"province": figures(refused, self.manifest, self.scored),
                              "old_test": figures(refused, self.base, self.base.split("test"))}  # fmt: skip
        row["minutes"] = (time.monotonic() - started) / 60
        return row

    def run(self) -> list[dict[str, Any]]:
        self.train_base()
        service = Service(self.work, self.uri)
        try:
            self.submit(service)
            for share in sorted(self.args.shares):
                if str(share) not in self.state["points"]:
                    self.state["points"][str(share)] = self.point(service, share)
                    self.save()
                    if share != max(self.args.shares):  # the last is printed below
                        print_table(self.state["points"], self.args.held_out)
        finally:
            service.close()
        points = {str(s): self.state["points"][str(s)] for s in sorted(self.args.shares)}
        print_table(points, self.args.held_out)
        return list(points.values())


def _cell(point: dict[str, Any], part: str, key: str, zero: dict[str, Any] | None) -> str:
    """A figure, its interval and its ratio to the 0 % row; "—" where there is nothing to measure (a precision
    where nothing was identified, a ratio to nothing)."""
    value, (lo, hi) = point[part][key]["value"], point[part][key]["ci"]
    if value != value:
        return "— (none identified)"
    base = zero[part][key]["value"] if zero else float("nan")
    ratio = f"{value / base:.2f}×" if base == base and base > 0 else "—"
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}] ({ratio})"


def print_table(points: dict[str, dict[str, Any]], held_out: str) -> None:
    ordered = [points[k] for k in sorted(points, key=int)]
    zero = points.get("0")
    print(f"\nLearning curve on {held_out} (the province), per original, 95 % bootstrap intervals, × = ratio to 0 %:")
    print("| share confirmed | originals confirmed | gate | served | top-1 | useful answers | precision of identified | "
          "macro-F1 (province) | macro-F1 (old test split) | minutes |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for p in ordered:
        cells = [_cell(p, "province", k, zero) for k in MEASURES] + [_cell(p, "old_test", "macro_f1", zero)]
        print(f"| {p['share']} % | {p['confirmed']} | {p['gate']} | {p['served']} | {' | '.join(cells)} | "
              f"{p['minutes']:.1f} |")  # fmt: skip
        if "refused" in p:  # the challenger the gate refused, not served
            cells = [_cell(p["refused"], "province", k, zero) for k in MEASURES]
            print(f"| ↳ refused | {p['confirmed']} | refused | {p['version']} (not served) | {' | '.join(cells)} | "
                  f"{_cell(p['refused'], 'old_test', 'macro_f1', zero)} | |")  # fmt: skip
    first = ordered[0] if ordered else None
    if first:
        print(f"Scored: {first['province']['originals']} province originals never confirmed, "
              f"{first['old_test']['originals']} old test originals.")  # fmt: skip
    for p in ordered:
        if p["gate"] == "refused":
            print(f"{p['share']} %: refused: " + "; ".join(r for r in p["reasons"] if "too" in r))
    print(flush=True)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="data/manifests/merged.csv")
    parser.add_argument("--held-out", default="ricepest-extra", help="The source that plays the new province.")
    parser.add_argument("--config", default="training/configs/default.yaml")
    parser.add_argument("--shares", type=int, nargs="+", default=[0, 10, 25, 50], help="Percent confirmed.")
    parser.add_argument("--work", default="runs/learning-curve")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="A training override key=value (repeatable).")
    args = parser.parse_args(argv)
    if 0 not in args.shares or not all(0 <= s <= 100 * HALF for s in args.shares):
        parser.error(f"--shares must include 0 (every row is compared with it) and stay within 0-{100 * HALF:.0f}")
    if not Path(args.manifest).is_file():
        print(f"{args.manifest} not found: run `bash scripts/merge_shared.sh` (needs ../shared/datasets).")
        raise SystemExit(0)
    return Curve(args).run()


if __name__ == "__main__":
    main()
