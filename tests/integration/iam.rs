//! IAM templates and policies: parse, cfn-lint, and the conditions issue 9 asks for.
