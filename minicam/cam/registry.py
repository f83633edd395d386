"""The registry of methods: name -> function(model, x, layer, target=None, **options) -> (N, h, w)."""
from minicam.cam.ablation import ablationcam
from minicam.cam.cam import cam
from minicam.cam.eigen import eigencam, eigengradcam
from minicam.cam.gradcampp import gradcampp, smoothgradcampp
from minicam.cam.gradient import gradcam, gradcam_elementwise, gradcam_plus, hirescam, layercam, xgradcam
from minicam.cam.guided import guided_backprop, guided_gradcam
from minicam.cam.scorecam import scorecam

METHODS = {
    "cam": cam,
    "gradcam": gradcam,
    "gradcam++": gradcampp,
    "gradcam+": gradcam_plus,
    "hirescam": hirescam,
    "gradcam-elementwise": gradcam_elementwise,
    "xgradcam": xgradcam,
    "layercam": layercam,
    "scorecam": scorecam,
    "ablationcam": ablationcam,
    "eigencam": eigencam,
    "eigengradcam": eigengradcam,
    "smoothgradcam++": smoothgradcampp,
    "guided-backprop": guided_backprop,
    "guided-gradcam": guided_gradcam,
}

# Whether the method's paper ends with a ReLU of the map (functions that have one
# accept relu=False to skip it; explain() then applies the convention's choice).
HAS_FINAL_RELU = {
    "cam": False,                  # Zhou et al.: the map is sum_k w_k A_k, signed
    "gradcam": True,
    "gradcam++": True,
    "gradcam+": True,
    "hirescam": True,
    "gradcam-elementwise": False,  # its ReLU sits inside the channel sum
    "xgradcam": True,
    "layercam": True,
    "scorecam": True,
    "ablationcam": True,
    "eigencam": False,             # a projection on the first principal component
    "eigengradcam": False,
    "smoothgradcam++": True,
    "guided-backprop": False,      # a gradient image
    "guided-gradcam": False,
}
