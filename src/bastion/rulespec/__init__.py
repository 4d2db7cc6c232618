"""The rule language (typed YAML): model (what a rule may say), signals (what it can look at),
compile (predicates built once), loader (files and the starter set), explain (rules in words).

Only the model is imported here: bastion.config imports it, and the rest imports bastion.config.
"""

from bastion.rulespec.model import Actions, RulesConfig, RuleSpec, Scope, Test

__all__ = ["Actions", "RuleSpec", "RulesConfig", "Scope", "Test"]
