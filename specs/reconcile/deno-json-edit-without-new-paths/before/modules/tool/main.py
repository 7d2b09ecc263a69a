# module entry
