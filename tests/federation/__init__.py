"""Federation: front servers that import back servers on other hosts (issue 11)."""
