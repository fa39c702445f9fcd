"""SAGE's search engine (paper 000), in the shape TextAttack made standard:

  goals            what to minimise and when a sample counts as found  (``goals``)
  constraints      non-outlier certificates of a latent, a prompt's perplexity
                   (``constraints``)
  transformations  latent delta, appended token rows, appended word  (``transformations``)
  search           one signed-gradient loop with projection, early stop and a
                   checkpoint per iteration  (``loop``)

The four SAGE studies compose these parts; none has a descent loop of its own.
"""

from .constraints import Certificate, NonOutlier, certify, chi2_bounds, perplexity, project_norm, project_normal, spatial_p
from .goals import DistortedGoal, RobustGoal, TargetGoal, UnrelatedGoal, goal_from_spec
from .loop import Checkpoint, SearchState, signed_descent
from .transformations import LatentDelta, TokenRows

__all__ = ["Certificate", "Checkpoint", "DistortedGoal", "LatentDelta", "NonOutlier", "RobustGoal", "SearchState", "TargetGoal",
           "TokenRows", "UnrelatedGoal", "certify", "chi2_bounds", "perplexity", "project_norm", "project_normal",
           "goal_from_spec", "signed_descent", "spatial_p"]
