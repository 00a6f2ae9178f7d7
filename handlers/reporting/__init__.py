"""Reporting: the daily digests, the monthly service report with its charts, and the schedule that posts both.

The monthly service report: per service, or for all services together.

``report_data`` computes the month once, as plain data — agreed against achieved for each target, the
breaches and the OLA or UC that caused each, availability, ticket volume and mean time to resolve, the
change success rate, the satisfaction trend, the improvement register and the manager's commentary — and
everything else only presents it: the chat reply here, the charts (``charts``), and the HTML and
PDF files (``bot/report_export``). So the chat, the files and the tests always show the same numbers.

Definitions, where a report needs one:

- A month runs from midnight to midnight in the bot's time zone (``bot.timezone``).
- Targets are ``attainment.attainment_data`` for the month: ticket targets count the clocks that started in the
  month and are decided (met, or breached); availability and satisfaction are measured over the month.
- A breach's cause is the OLA or UC under the SLA whose clock breached on that ticket; when none breached,
  the one that used the largest share of its target; "no OLA or UC" when none ran.
- Time to resolve is over the tickets resolved in the month (their last resolution), from opening to
  resolution: in clock time, and in business time on the calendar of the ticket's service; the mean, with
  the median and the 90th percentile (nearest rank) beside it (``spread``).
- The change success rate is ``calendar.success_rate``, as the change calendar and the API count it:
  successful ÷ implemented changes whose work ended in the month, where implemented means completed (with
  or without issues) or failed, and only a change completed without issues is a success. The share of
  emergency changes is over the same implemented changes.
- The CSI figures are as the month ended: items opened and done in it, and those still open at its end
  (overdue when their due date had passed by then). For the month still running, "the end" is now.
- The commentary is the newest ``report comment`` for the service (or "all") and the month.
- The trends (attainment, satisfaction) cover the month and the five before it. The attainment trend is
  the customer's view: the share of SLA targets (ticket targets, availability, satisfaction) that reached
  their goal, and the share of SLA ticket clocks met. A month without outages counts as fully available, so
  months before svcbot was measuring anything show availability met and nothing else.

In chat, ``report [SERVICE|all] [MONTH]`` answers privately with the numbers (not the charts: drawing them
is for the post), and with a Post button for those who may post: service managers, and a service's owner
for their own service. ``report post`` queues the report with its three charts to the service's channel, or
for all services to ``changes.channel`` (else the first channel of app.yaml); ``report comment`` records
the commentary. ``queue_report`` is the same post from inside a transaction someone else holds.
"""
