"""Metrics for saliency maps: does a map agree with the model, and does it point at the object?

Faithfulness (run the model on images changed according to the map):
    confidence_scores        (Y, O): the class score on the image and on E = map * image
    relative_drops           max(0, Y - O) / Y per image
    average_drop             Average Drop %                 } Grad-CAM++ paper
    increase_in_confidence   % Increase in Confidence       } (Chattopadhay et al. 2018)
    win_percent              Win %                          }
    torchcam_average_drop, torchcam_confidence_increase, pytorch_grad_cam_drop_in_confidence
                             the libraries' quantities under their own names: NOT the paper's units
    importance_rank, deletion_curve, insertion_curve, area_under_curve   RISE (Petsiuk et al. 2018)
Localisation (no model; masks are the ground truth of minicam.data):
    peak_locations, pointing_game                           Zhang et al. 2016
    energy_pointing_game                                    Score-CAM paper (Wang et al. 2020)
    instance_coverage, instance_coverage_batch              Grad-CAM++'s multi-instance claim
Similarity between two maps (sanity checks, Adebayo et al. 2018):
    average_ranks, spearman_rank_correlation, ssim

Files: faithfulness.py, localisation.py, similarity.py; checks.py holds the input checks.

Conventions. x is a batch of images (N, C, H, W); maps are (N, H, W) at the
input's size, with values in [0, 1] (what minicam.cam.explain returns);
classes holds one target class per image (N,). score="softmax" (default)
uses the class probability, score="logit" the pre-softmax output. The model
runs in eval mode without a graph (minicam.cam.capture.predict), `batch_size`
images at a time.

The three "Average Drop" numbers in use are different quantities (docs/peers.md,
Evaluation metrics; silent disagreements 8): the paper's is a percentage of Y; torchcam's a fraction with
1e-7 added to Y; pytorch-grad-cam's an absolute difference. Numbers computed
with different definitions cannot be compared.

Where the map multiplies the image. E = map * x on the x you pass. The paper
multiplies the image; torchcam and pytorch-grad-cam multiply the NORMALISED
input tensor, where 0 is the data set's mean colour, not black. Pass the
tensor your model actually takes, and say which one you used.
"""
from minicam.metrics.checks import MAP_TOLERANCE, SCORES  # noqa: F401
from minicam.metrics.faithfulness import (  # noqa: F401
    confidence_scores, relative_drops, average_drop, increase_in_confidence, win_percent,
    torchcam_average_drop, torchcam_confidence_increase, pytorch_grad_cam_drop_in_confidence,
    importance_rank, deletion_curve, insertion_curve, area_under_curve,
)
from minicam.metrics.localisation import (  # noqa: F401
    peak_locations, pointing_game, energy_pointing_game, instance_coverage, instance_coverage_batch,
)
from minicam.metrics.similarity import (  # noqa: F401
    average_ranks, spearman_rank_correlation, ssim,
)
