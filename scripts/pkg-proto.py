#!/usr/bin/env python3
"""Stand-in for the rootfs half of `moby pkg build`, until it lands: runs the `rootfs:` steps of
a package's build.yml (docs/pkg.md) into a staging directory, so that recipes can be tried by hand.

Usage: scripts/pkg-proto.py PKG_DIR STAGING_DIR        (STAGING_DIR must not exist)
Env:   MOBY_DEB_CACHE (default ~/.moby/debs): where .debs are downloaded

`debs:` resolves the closure like apt on an empty system (`apt-get install -s` against an empty
dpkg status, no Recommends), downloads with `apt-get download`, unpacks with `dpkg-deb -x`.
`rust:` is not supported here. Prints the staging size at the end.
"""
import os, shutil, subprocess, sys, tempfile
import yaml


def die(msg):
    sys.exit(f"pkg-proto: {msg}")


def closure(names, skip):
    with tempfile.NamedTemporaryFile() as status:
        out = subprocess.run(
            ["apt-get", "install", "-s", "-q", "--no-install-recommends",
             "-o", f"Dir::State::status={status.name}", *names],
            capture_output=True, text=True)
    if out.returncode != 0:
        die(f"apt cannot resolve {names}:\n{out.stdout}{out.stderr}")
    pkgs = []
    for line in out.stdout.splitlines():
        if line.startswith("Inst "):
            parts = line.split()
            pkgs.append((parts[1], parts[2].strip("()[]") if parts[2].startswith("(") else parts[3].strip("(")))
    return [(n, v) for n, v in pkgs if n not in skip]


def fetch(cache, name, version):
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    for a in (arch, "all"):
        f = os.path.join(cache, f"{name}_{version.replace(':', '%3a')}_{a}.deb")
        if os.path.exists(f):
            return f
    opts = ["-o", "APT::Sandbox::User=root"] if os.getuid() == 0 else []
    subprocess.run(["apt-get", "download", "-q", *opts, f"{name}={version}"], cwd=cache, check=True,
                   stdout=subprocess.DEVNULL)
    return fetch(cache, name, version)


def dest(root, path):
    return os.path.join(root, path.lstrip("/"))


def main():
    if len(sys.argv) != 3:
        die(__doc__)
    pkg, root = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if os.path.exists(root):
        die(f"{root} exists; give a new staging directory")
    spec = yaml.safe_load(open(os.path.join(pkg, "build.yml")))
    cache = os.environ.get("MOBY_DEB_CACHE", os.path.expanduser("~/.moby/debs"))
    os.makedirs(cache, exist_ok=True)
    os.chmod(cache, 0o755)
    os.makedirs(root)
    for step in spec.get("rootfs", []):
        mode = int(step["mode"], 8) if "mode" in step else None
        if "debs" in step:
            pkgs = closure(step["debs"], set(step.get("skip", [])))
            print("debs:", " ".join(n for n, _ in pkgs))
            for n, v in pkgs:
                subprocess.run(["dpkg-deb", "-x", fetch(cache, n, v), root], check=True)
        elif "copy" in step:
            src, d = os.path.join(pkg, step["copy"]), dest(root, step["to"])
            for pair in spec.get("extra-sources", []):
                esrc, edst = pair.split(":", 1)
                rel = os.path.relpath(step["copy"], edst)
                if not rel.startswith(".."):
                    src = os.path.normpath(os.path.join(pkg, esrc, rel))
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if os.path.isdir(src):
                shutil.copytree(src, d, symlinks=True, dirs_exist_ok=True)
            else:
                shutil.copy2(src, d)
                if mode is not None:
                    os.chmod(d, mode)
        elif "file" in step:
            d = dest(root, step["file"])
            os.makedirs(os.path.dirname(d), exist_ok=True)
            with open(d, "w") as f:
                f.write(step["content"])
            os.chmod(d, mode if mode is not None else 0o644)
        elif "dir" in step:
            os.makedirs(dest(root, step["dir"]), exist_ok=True)
            if mode is not None:
                os.chmod(dest(root, step["dir"]), mode)
        elif "symlink" in step:
            d = dest(root, step["symlink"])
            os.makedirs(os.path.dirname(d), exist_ok=True)
            if os.path.lexists(d):
                os.remove(d)
            os.symlink(step["target"], d)
        elif "remove" in step:
            for p in step["remove"]:
                d = dest(root, p)
                if os.path.isdir(d) and not os.path.islink(d):
                    shutil.rmtree(d)
                elif os.path.lexists(d):
                    os.remove(d)
        elif "script" in step:
            env = dict(os.environ, ROOTFS=root, PKG=pkg, DEBS=cache)
            subprocess.run([os.path.join(pkg, step["script"])], env=env, check=True, cwd=pkg)
        else:
            die(f"unsupported step {step}")
    size = subprocess.run(["du", "-sh", "--apparent-size", root], capture_output=True, text=True).stdout.split()[0]
    print(f"{spec['image']}: {size} in {root}")


main()
