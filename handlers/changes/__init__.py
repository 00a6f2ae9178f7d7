"""Change enablement: requests for change, their approval, their life, and their announcements.

A change moves through a state machine close to ITIL 4:

    new → awaiting-approval → scheduled → in-progress → review → closed
                   ↘ rejected      ↘ cancelled     ↘ closed (successful, nothing to review)

Approvals come from the CAB (emergency changes: the ECAB), as many as app.yaml asks for the change's
type and risk; one rejection rejects; nobody approves a change they requested or implement. Conflicts,
freezes and maintenance windows block approval until a service manager overrides them with a reason.

Each change is announced once per channel; every later step edits those messages in place and adds a
line to their threads. Reminders and prompts fall due on the change row and are sent by ``messages.sweep``.
"""
