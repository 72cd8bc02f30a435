"""Public trust: the front door's figures, the published incidents log and signed release receipts."""
