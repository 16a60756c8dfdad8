"""`python -m jobs` runs the clock; `python -m jobs run NAME` runs one job once, now;
`python -m jobs list` lists the jobs."""

from __future__ import annotations

import sys

from jobs.registry import all_jobs


def main(argv: list[str]) -> int:
    from wsgi import create_app

    jobs = all_jobs()
    if argv[:1] == ["list"]:
        for job in sorted(jobs.values(), key=lambda j: j.name):
            print(f"{job.name:24} every {job.period_seconds:>6}s  {job.description}")
        return 0
    app = create_app()
    if argv[:1] == ["run"] and len(argv) == 2:
        from common.db import utcnow
        from jobs.registry import run_claimed

        job = jobs.get(argv[1])
        if job is None:
            print(f"unknown job {argv[1]!r}; known: {', '.join(sorted(jobs))}", file=sys.stderr)
            return 2
        # A manual run has a slot of its own, so it runs even if the scheduled slot already ran.
        summary = run_claimed(app, job, "manual:" + utcnow().isoformat(timespec="microseconds"))
        print(summary)
        return 0
    if argv:
        print("usage: python -m jobs [list | run NAME]", file=sys.stderr)
        return 2
    from jobs.clock import run_clock

    run_clock(app)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
