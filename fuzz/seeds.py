"""Writes the seed corpora (fuzz/corpus/<target>/seed-*) from the repository's fixtures.

Run from the repository root: python3 fuzz/seeds.py. Seeds are committed; what libFuzzer finds
beyond them is not (scripts/fuzz.sh keeps its working corpus in a temporary directory).
Input format per target: fuzz/src/input.rs (NUL-separated parts).
"""
import base64
import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIX = ROOT / "tests" / "fixtures"
OUT = ROOT / "fuzz" / "corpus"


def write(target, name, data):
    d = OUT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"seed-{name}").write_bytes(data if isinstance(data, bytes) else data.encode())


def main():
    for d in OUT.glob("*"):
        for f in d.glob("seed-*"):
            f.unlink()

    for f in sorted((FIX / "circleci-orb").iterdir()):
        write("orb_payload", f.stem, f.read_bytes())

    write("auth_percent_decode", "query", "limit=5&token=s3cr3t%2F%2B%3D")
    write("auth_percent_decode", "bearer", "a=1&token=%e2%82%ac+x\0Bearer s3cr3t")
    write("auth_percent_decode", "odd", "token=%zz%4%\0Basic dG9rZW4=")

    cursor = base64.urlsafe_b64encode(b"r1:0190b4c2-7d3e-7f00-8000-000000000001").rstrip(b"=")
    write("cursor_decode", "valid", cursor)
    write("cursor_decode", "not-base64", "r1:not-a-cursor")

    for f in sorted((FIX / "circleci-native").glob("*-completed*.json")):
        write("circleci_payload", f.stem, f.read_bytes())

    vectors = json.loads((FIX / "circleci-native" / "signature-vectors.json").read_text())
    for i, v in enumerate(vectors["vectors"]):
        header = f"v1={v['v1']}" if i != 1 else f"v2=abc, v1={v['v1']},v1=00"
        write("circleci_signature_header", f"vector{i}", f"{header}\0{v['secret']}\0{v['body']}")

    cases = json.loads((FIX / "kustomize" / "kustomize-set-image.json").read_text())
    cases += json.loads((FIX / "kustomize" / "kustomize-set-image-derived.json").read_text())
    picked = [c for c in cases if c.get("args")][::9]
    for i, c in enumerate(picked):
        write("set_image", f"case{i}", "\0".join([c["given_file"], *c["args"]]))
    for i, c in enumerate(cases[::10]):
        if c.get("args"):
            write("kustomize_args", f"case{i}", "\0".join(c["args"]))

    matches = json.loads((FIX / "kustomize" / "kustomize-image-match.json").read_text())
    for i, c in enumerate([m for m in matches if "images_entry_name" in m][::5]):
        write("image_match", f"case{i}", "\0".join([c["input_image"], c["images_entry_name"], "v2"]))
    derived = json.loads((FIX / "kustomize" / "kustomize-image-match-derived.json").read_text())
    for i, c in enumerate(derived[:3]):
        img = c["images"][0]
        write("image_match", f"derived{i}", "\0".join([c["input_image"], img["name"], img.get("newTag", "")]))

    for f in sorted((FIX / "port").glob("*.json")):
        if f.name != "signature-vectors.json":
            write("port_payload", f.stem, f.read_bytes())
    for f in sorted((FIX / "eventbridge").glob("*.json")):
        write("events_payload", f.stem, f.read_bytes())
    write("port_kafka_batch", "port-batch", (FIX / "kafka" / "port-batch.json").read_bytes())
    vectors = json.loads((FIX / "port" / "signature-vectors.json").read_text())
    for i, v in enumerate(vectors["vectors"]):
        parts = [v["timestamp"], v["signature"], v["secret"], v["body"]]
        write("port_signature_header", f"vector{i}", "\0".join(parts))
        parts[1] = "v0,abc " + v["signature"]
        parts[0] = v["timestamp"] + "000"
        write("port_signature_header", f"vector{i}-ms", "\0".join(parts))


if __name__ == "__main__":
    main()
