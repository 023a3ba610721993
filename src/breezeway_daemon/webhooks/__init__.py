"""Breezeway webhooks: the fast path in front of polling (issue 15).

``receiver`` answers Breezeway's deliveries and commits each accepted event to
``webhook_events`` before acknowledging it; ``store`` is that table; ``worker``
applies pending events through the same loader as polling; ``subscriptions``
is the ``breezeway-daemon webhooks`` command.
"""
