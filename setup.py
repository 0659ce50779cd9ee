"""ament_python build of stereo_depth_ros (also installable with plain pip)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "stereo_depth_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["weights/*.safetensors", "weights/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
    ],
    install_requires=["setuptools", "numpy", "torch", "safetensors"],
    extras_require={"test": ["pytest"]},
    zip_safe=False,
    maintainer="stereo_depth_ros maintainers",
    maintainer_email="maintainers@users.noreply.h-seed-e23c52d4.example",
    description="Self-adapting stereo depth node for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "stereo_depth_node = stereo_depth_ros.ros.node:main",
            "stereo_depth_demo = stereo_depth_ros.tools.demo:main",
            "stereo_depth_train = stereo_depth_ros.tools.train:main",
            "stereo_depth_evaluate = stereo_depth_ros.tools.evaluate:main",
            "stereo_depth_bench_inference = stereo_depth_ros.tools.bench_inference:main",
            "stereo_depth_bench_node = stereo_depth_ros.tools.bench_node:main",
            "stereo_depth_make_bag = stereo_depth_ros.tools.make_bag:main",
            "stereo_depth_replay = stereo_depth_ros.tools.replay:main",
            "stereo_depth_bench_adaptation = stereo_depth_ros.tools.bench_adaptation:main",
            "stereo_depth_blend_weights = stereo_depth_ros.tools.blend_weights:main",
            "stereo_depth_label_quality = stereo_depth_ros.tools.label_quality:main",
        ],
    },
)
