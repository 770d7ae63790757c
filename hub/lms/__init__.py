"""The course in an LMS (LTI 1.3 / LTI Advantage): launch, roster (NRPS) and grades (AGS).

``launch`` verifies a launch; ``identity`` maps an LMS person to a unix
account; ``provision`` sets them up on their first launch; ``outbox`` posts
the gradebook's scores to the LMS, durably; ``roster`` syncs the LMS's
roster; ``service`` is the hub service that runs both; ``authenticator`` is
the hub's login.  ``testing`` holds a local LTI 1.3 platform for the tests
and the try-out.  docs/lms.md says how to register the tool in an LMS.
"""
