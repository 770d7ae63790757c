"""A local LTI 1.3 platform (an LMS on localhost) and its certificate, for tests and the try-out hub."""
