"""fastai's course deployment, as its template writes it, for `make bench-serve`.

The course's render/Starlette template (`app/server.py`): `load_learner` once, then `POST
/analyze` reads the multipart field `file`, runs `learn.predict` on the event loop and answers
`{"result": "<class>"}`. Kept as the template has it (no batching, prediction on the event
loop) since that is what a fastai user deploys; only the weights are fastvision's export, so
both servers answer with the same network.

    python bench/fastai_serve.py --model export.safetensors --data SAMPLE --port 8001
"""
import argparse, json, os, sys
from io import BytesIO

import torch
from fastai.vision.all import (
    CategoryBlock, DataBlock, ImageBlock, PILImage, Resize, GrandparentSplitter, error_rate,
    get_image_files, imagenet_stats, Normalize, parent_label, vision_learner,
)
from fastai.vision.learner import model_meta, _default_meta
from safetensors import safe_open
from safetensors.torch import load_file
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

model_meta[mobilenet_v2] = {**_default_meta, "cut": -1, "weights": MobileNet_V2_Weights.IMAGENET1K_V1}


def fastai_learner(export, data):
    """A fastai learner whose network holds fastvision's exported weights: torchvision's
    MobileNetV2 `features` as the body (cut=-1) and fastai's head, whose two linear layers get
    the biases fastvision's head has."""
    with safe_open(export, "pt") as f:
        info = json.loads(f.metadata()["fastvision"])
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=info["classes"])),
        get_items=get_image_files,
        splitter=GrandparentSplitter(train_name="Training", valid_name="Test"),
        get_y=parent_label,
        item_tfms=Resize(info["size"]),
        batch_tfms=Normalize.from_stats(*imagenet_stats),
    )
    dls = dblock.dataloaders(data, bs=64, num_workers=0)
    learn = vision_learner(dls, mobilenet_v2, metrics=error_rate, pretrained=False)
    head = learn.model[1]
    for i in (4, 8):
        old = head[i]
        head[i] = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    ours = load_file(export)
    state = {}
    for k, v in ours.items():
        state[("1." + k[len("head."):]) if k.startswith("head.") else ("0.0." + k[len("features."):])] = v
    missing, unexpected = learn.model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        sys.exit(f"weights do not fit fastai's model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    learn.model.eval()
    return learn


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--port", type=int, default=8001)
    p.add_argument("--check", nargs="*", help="print learn.predict's probabilities for these files and exit")
    args = p.parse_args()
    learn = fastai_learner(args.model, args.data)

    if args.check:
        for f in args.check:
            _, idx, probs = learn.predict(PILImage.create(f))
            print("CHECK", json.dumps({"file": f, "index": int(idx), "probs": [float(x) for x in probs]}))
        return

    # The template's app, as written there.
    async def analyze(request):
        img_data = await request.form()
        img_bytes = await (img_data["file"].read())
        img = PILImage.create(BytesIO(img_bytes))
        prediction = learn.predict(img)[0]
        return JSONResponse({"result": str(prediction)})

    app = Starlette(routes=[Route("/analyze", analyze, methods=["POST"])])
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_headers=["X-Requested-With", "Content-Type"])
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
