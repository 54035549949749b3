"""Entry point of interop/tools/run: every tool's scenarios, one JSON line each.

A tool that cannot run here prints {"client": TOOL, "skip_tool": REASON} instead (interop/run
shows it as "skip")."""
import json, os, sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import admin_v1, admin_v2, flower_check  # noqa: E402

TOOLS = {"rabbitmqadmin-v1": (admin_v1.available, admin_v1.AdminV1),
         "rabbitmqadmin-v2": (admin_v2.available, admin_v2.AdminV2),
         "flower": (flower_check.available, flower_check.Flower)}


def main():
    want = [t for t in os.environ.get("INTEROP_TOOLS", ",".join(TOOLS)).split(",") if t]
    unknown = set(want) - set(TOOLS)
    if unknown:
        sys.exit(f"unknown tools: {', '.join(sorted(unknown))} (known: {', '.join(TOOLS)})")
    only = [s for s in os.environ.get("INTEROP_TOOL_SCENARIOS", "").split(",") if s] or None
    for name in want:
        available, cls = TOOLS[name]
        why = available()
        if why:
            print(json.dumps({"client": name, "skip_tool": why}), flush=True)
            print(f"{name:18} skip: {why}", file=sys.stderr, flush=True)
            continue
        tool = cls(f"it.tools.{name}")
        try:
            tool.run_all(only)
        except Exception as e:  # noqa: BLE001 - the tool's fixtures failed: report, go on
            print(json.dumps({"client": name, "scenario": "setup", "ok": False, "obs": None,
                              "err": f"{type(e).__name__}: {e}"[:1500]}), flush=True)
            print(f"{name:18} setup FAIL {type(e).__name__}: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
