"""Retrievers for application frameworks over an open ``vecpress.Collection``.

Optional extras, imported only by the module of the framework in use:

    pip install "vecpress[langchain]"   ->  vecpress.integrations.langchain.VecpressRetriever
    pip install "vecpress[llamaindex]"  ->  vecpress.integrations.llamaindex.VecpressRetriever
"""
