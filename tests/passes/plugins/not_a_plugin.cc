// A shared library without the plugin entry point.
extern "C" int some_function() { return 42; }
