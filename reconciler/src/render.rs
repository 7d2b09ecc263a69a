//! Rendering of plans (terraform-style text and the JSON of DESIGN.md §4).
