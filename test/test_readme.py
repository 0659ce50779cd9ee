"""The README is a user's entry point: every command, tool, make target, link and picture it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def console_scripts() -> set[str]:
    setup = (ROOT / "setup.py").read_text()
    return set(re.findall(r'"(stereo_depth_\w+) = ', setup))


def test_the_readme_is_short_and_names_only_tools_that_exist():
    assert len(README.splitlines()) < 250
    named = set(re.findall(r"\bstereo_depth_(?!ros\b)\w+", README))
    scripts = console_scripts()
    assert named, "the README names no tools"
    missing = sorted(n for n in named if n not in scripts and not n.startswith("stereo_depth_ros"))
    assert not missing, f"the README names tools that are not console scripts: {missing}"
    for script in scripts:  # and every tool is named
        assert script in README, f"{script} is missing from the README"


def test_make_targets_links_and_pictures_exist():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z]+):", makefile, flags=re.M))
    for target in re.findall(r"\bmake ([a-z]+)\b", README):
        assert target in targets, f"make {target} is not a target"
    assert {"demo", "test"} <= set(re.findall(r"\bmake ([a-z]+)\b", README))
    for link in re.findall(r"\]\(([^)#\s]+)\)", README):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"the README links to {link}, which does not exist"
    for path in re.findall(r"`(config/[\w.]+|launch/[\w.]+)`", README):
        assert (ROOT / path).exists(), path


def test_the_launch_arguments_the_readme_names_are_declared():
    launch = (ROOT / "launch" / "stereo_depth.launch.py").read_text()
    declared = set(re.findall(r'DeclareLaunchArgument\("(\w+)"', launch))
    lines = README.splitlines()
    commands = []
    for i, line in enumerate(lines):
        if "ros2 launch stereo_depth_ros" in line:
            command = line
            while command.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command.rstrip()[:-1] + lines[i]
            commands.append(command)
    assert commands, "the README shows no ros2 launch command"
    for command in commands:
        for argument in re.findall(r"\s(\w+):=", command):
            assert argument in declared, f"launch argument {argument} is not declared"
