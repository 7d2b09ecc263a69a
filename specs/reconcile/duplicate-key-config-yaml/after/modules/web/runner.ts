// module entry
