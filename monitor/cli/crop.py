"""`monitor crop`: the aligned crop of the largest face in a picture."""

from __future__ import annotations

import json

from ..errors import EXIT_OK, InputError


def add_parser(commands) -> None:
    crop = commands.add_parser(
        "crop", help="write the aligned crop of the largest face in a picture",
        description="Detect the largest face in a picture and write its aligned 256x256 crop: exactly what the "
                    "model sees. Exit 2 when no face is found.")
    crop.add_argument("image", metavar="IMAGE")
    crop.add_argument("--out", required=True, metavar="CROP.png")
    crop.add_argument("--template", choices=("deepfakebench", "gend"), default="deepfakebench",
                      help="the crop template (deepfakebench: the paper's checkpoint; gend: GenD)")
    crop.add_argument("--min-confidence", type=float, default=0.5, help="face detector threshold (default 0.5)")
    crop.set_defaults(handler=run)


def run(args) -> int:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ..faces.align import align
    from ..faces.detect import FaceDetector

    try:
        with Image.open(args.image) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{args.image}: cannot read image: {getattr(e, 'strerror', None) or e}") from None
    try:
        with FaceDetector(min_confidence=args.min_confidence) as detector:
            faces = detector.detect(pixels)
    except FileNotFoundError as e:
        raise InputError(str(e)) from None
    if not faces:
        raise InputError(f"{args.image}: no face found (detector confidence >= {args.min_confidence})")
    aligned = align(pixels, faces[0].keypoints, args.template)
    Image.fromarray(aligned.crop).save(args.out)
    print(json.dumps({"image": args.image, "out": args.out, "template": args.template,
                      "confidence": round(faces[0].score, 4), "interocular_px": round(aligned.interocular_px, 1),
                      "alignment_residual_px": round(aligned.residual, 2), "faces": len(faces)}))
    return EXIT_OK
